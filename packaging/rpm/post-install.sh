# %post of zerotrace ($1: 1 = first installation, 2+ = upgrade). On a first
# installation: enable the unit, and start it only when the configuration
# selects something to instrument (without that the agent stops at once with
# exit code 78). Upgrades are restarted by %postun.
configured() {
	grep -Eq '^[[:space:]]*(export[[:space:]]+)?OTEL_EBPF_OPEN_PORT=[^[:space:]#]' \
		/etc/zerotrace/zerotrace.env 2>/dev/null || [ -s /etc/zerotrace/config.yaml ]
}
# /run/zerotrace, the worker's live-view socket directory (tmpfiles.d).
if command -v systemd-tmpfiles >/dev/null; then
	systemd-tmpfiles --create zerotrace.conf >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ] && command -v systemctl >/dev/null; then
	systemctl --no-reload enable zerotrace.service >/dev/null 2>&1 || :
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload >/dev/null 2>&1 || :
		if configured; then
			systemctl start zerotrace.service >/dev/null 2>&1 || :
		else
			echo "zerotrace: enabled but not started: set OTEL_EBPF_OPEN_PORT in" \
				"/etc/zerotrace/zerotrace.env, then: systemctl start zerotrace" >&2
		fi
	fi
fi
exit 0
