# %pre of zerotrace: the worker's system account (no home, no shell).
getent group zerotrace >/dev/null || groupadd -r zerotrace
getent passwd zerotrace >/dev/null ||
	useradd -r -g zerotrace -M -d / -s /sbin/nologin -c "zerotrace worker" zerotrace
exit 0
