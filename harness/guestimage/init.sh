#!/bin/sh
# /init of the kvmconf guest image: mount, load modules, bind VFIO devices,
# bring up the network and the SSH server, then idle. Every line it prints
# starts with "kvmconf:" so the harness can follow the boot on the serial log.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /tmp /run /var/log
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
echo "kvmconf: init"

has_flag() { grep -m1 '^flags' /proc/cpuinfo | grep -qw "$1"; }

# /etc/kvmconf/modules: "group:alternative name path" in load order. Groups
# load in parallel (module loading is slow under TCG); a module two groups
# share is loaded once: the second insmod waits for the first and gets EEXIST.
load_group() {
  grep "^$1:" /etc/kvmconf/modules | while read -r spec name path; do
    case "$spec" in
      *:kvm-amd) has_flag svm || continue ;;
      *:kvm-intel) has_flag vmx || continue ;;
    esac
    grep -q "^$name " /proc/modules && continue
    insmod "$path" 2>/dev/null || grep -q "^$name " /proc/modules || echo "kvmconf: insmod $name failed"
  done
}
for group in $(cut -d: -f1 /etc/kvmconf/modules | sort -u); do
  load_group "$group" &
done
wait

# The edu devices (1234:11e8) go to vfio-pci.
if [ -d /sys/bus/pci/drivers/vfio-pci ]; then
  for dev in /sys/bus/pci/devices/*; do
    [ "$(cat "$dev/vendor")" = 0x1234 ] && [ "$(cat "$dev/device")" = 0x11e8 ] || continue
    echo vfio-pci > "$dev/driver_override"
    echo "${dev##*/}" > /sys/bus/pci/drivers_probe
  done
fi

ip link set lo up
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2
# kvmconf.sshd=0 on the command line keeps the SSH server down (fault-injection tests).
grep -qw kvmconf.sshd=0 /proc/cmdline || dropbear -r /etc/dropbear/host_key -s -g -p 22 -P /run/dropbear.pid
echo "kvmconf: ready"
while :; do sleep 3600; done
