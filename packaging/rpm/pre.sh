# %pre (before the files are installed; $1 = 1 on install, 2 on upgrade).
# The service user, as the original package creates it (its group too, unless it exists).
if ! getent passwd xray >/dev/null; then
    if getent group xray >/dev/null; then
        useradd --system --gid xray --home-dir / --no-create-home --shell /sbin/nologin xray
    else
        useradd --system --user-group --home-dir / --no-create-home --shell /sbin/nologin xray
    fi
fi
mkdir -p -m 755 /var/log/xray
chown xray:xray /var/log/xray
# Enable the service after this transaction on a first install, and when replacing the
# original daemon's package (its unit lived in /etc/systemd/system and was never enabled).
# An upgrade of this package keeps whatever the administrator chose.
if [ "$1" -eq 1 ] || [ -f /etc/systemd/system/xray.service ]; then
    mkdir -p /var/lib/rpm-state/xray
    touch /var/lib/rpm-state/xray/enable
fi
exit 0
