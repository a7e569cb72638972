# %postun of zerotrace ($1: 0 = erase, 1+ = upgrade). After an upgrade the
# new files are in place: restart the service if it was running. The
# zerotrace account is kept on erase (RPM convention: accounts are never
# removed, a uid could be reused while files still carry it); a modified
# /etc/zerotrace/zerotrace.env is kept as zerotrace.env.rpmsave.
# cargo-generate-rpm cannot list directories in the package, so the two
# directories it created are removed here when empty.
if [ "$1" -eq 0 ]; then
	rmdir /etc/zerotrace /usr/share/doc/zerotrace 2>/dev/null || :
	rm -rf /run/zerotrace
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
	if [ "$1" -ge 1 ]; then
		systemctl try-restart zerotrace.service >/dev/null 2>&1 || :
	fi
fi
exit 0
