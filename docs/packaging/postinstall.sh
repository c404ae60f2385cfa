#!/bin/sh
# Runs after the files are unpacked, on the first install and on every
# upgrade (deb: "configure" with the old version in $2; rpm: $1 is 1 on
# install, 2 or more on upgrade). Every step may run again safely.
set -e

upgrade=false
case "$1" in
configure) if [ -n "$2" ]; then upgrade=true; fi ;;
[0-9]*) if [ "$1" -ge 2 ]; then upgrade=true; fi ;;
esac

# The user is created here, not shipped, so its uid is whatever the host
# has free; an existing user (or group) of that name is reused as it is.
if ! getent passwd secauto >/dev/null; then
	if getent group secauto >/dev/null; then
		useradd --system --gid secauto --no-create-home --home-dir /var/lib/secauto \
			--shell /usr/sbin/nologin --comment "secauto daemon" secauto
	else
		useradd --system --user-group --no-create-home --home-dir /var/lib/secauto \
			--shell /usr/sbin/nologin --comment "secauto daemon" secauto
	fi
fi

# Packages unpack as root; hand the state and log directories to the daemon.
# Only the directories themselves: the files in them are the daemon's own,
# and a large job store is not walked on every upgrade.
chown secauto:secauto /var/lib/secauto /var/log/secauto
chmod 0700 /var/lib/secauto
chmod 0750 /var/log/secauto

# The config may hold API tokens and webhook secrets: readable by the
# daemon's group, not by everyone. A group an operator chose is kept.
config=/etc/secauto/config.yaml
if [ -f "$config" ] && [ "$(stat -c %G "$config")" = root ]; then
	chgrp secauto "$config"
	chmod 0640 "$config"
fi

# Nothing to tell systemd in a container or chroot without it.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null || true
	if [ "$upgrade" = true ]; then
		# The new binary runs if the daemon was running; a stopped or
		# disabled daemon stays that way.
		systemctl try-restart secauto.service || true
	else
		# Not started on install: auth_tokens and the listen address in
		# the config deserve a look first.
		echo "secauto: review $config, then run: systemctl enable --now secauto"
	fi
fi
