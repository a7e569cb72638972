# %preun of zerotrace ($1: 0 = erase, 1+ = upgrade): stop and disable on erase.
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null; then
	systemctl --no-reload disable --now zerotrace.service >/dev/null 2>&1 || :
fi
exit 0
