#!/bin/sh
# Runs before the files are removed (deb: $1 is "remove" or "upgrade"; rpm:
# $1 is 0 on erase, 1 on upgrade). On upgrade the daemon keeps running and
# the new package's postinstall restarts it on the new binary.
set -e

case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		# SIGTERM: running jobs get server.shutdown_timeout to finish
		# and jobs.json is left complete.
		systemctl disable --now secauto.service >/dev/null 2>&1 || true
	fi
	;;
esac
