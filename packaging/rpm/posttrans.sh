# %posttrans (after the whole transaction, so after an upgraded package's old files are gone):
# load the unit; on install (or over the original's package) enable and start it; on an upgrade
# restart it if it runs, so the new binary and unit are the ones running.
if [ -L /etc/systemd/system/network-online.target.wants/xray.service ] &&
    [ ! -e /etc/systemd/system/network-online.target.wants/xray.service ]; then
    # Left dangling by the original package's unit, which was in /etc/systemd/system.
    rm -f /etc/systemd/system/network-online.target.wants/xray.service
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ -f /var/lib/rpm-state/xray/enable ]; then
        systemctl enable xray.service >/dev/null 2>&1 || :
        systemctl restart xray.service >/dev/null 2>&1 || :
    else
        # An upgrade of this package: restart if running; a stopped service stays stopped.
        systemctl try-restart xray.service >/dev/null 2>&1 || :
    fi
fi
rm -f /var/lib/rpm-state/xray/enable
exit 0
