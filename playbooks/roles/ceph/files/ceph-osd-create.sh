#!/bin/sh
# Create one BlueStore OSD on a disk (block device or regular file) without ceph-volume.
# Usage: ceph-osd-create.sh DISK OSD_UUID FILE_SIZE; prints the new OSD id.
set -eu
disk=$1
uuid=$2
file_size=$3
keyring=/var/lib/ceph/bootstrap-osd/ceph.keyring
ceph() { command ceph --connect-timeout 30 -n client.bootstrap-osd -k "$keyring" "$@"; }

# An id left by an interrupted run (created, never started) is given back first.
for stale in $(ceph osd dump --format json | python3 -c '
import json, sys
print(" ".join(str(o["osd"]) for o in json.load(sys.stdin)["osds"] if o["uuid"] == sys.argv[1]))
' "$uuid"); do
  ceph osd purge-new "osd.$stale" --yes-i-really-mean-it >&2
done

secret=$(ceph-authtool --gen-print-key)
id=$(printf '{"cephx_secret": "%s"}' "$secret" | ceph osd new "$uuid" -i -)
dir=/var/lib/ceph/osd/ceph-$id
install -d -o ceph -g ceph -m 0750 "$dir"
ln -sfn "$disk" "$dir/block"
ceph-authtool --create-keyring "$dir/keyring" --name "osd.$id" --add-key "$secret" >&2
umask 077
printf '%s' "$secret" >"$dir/keyfile.tmp"
ceph mon getmap -o "$dir/activate.monmap" >&2
chown -R ceph:ceph "$dir"
chown ceph:ceph "$disk"
size_opt=""
if [ -f "$disk" ] && [ ! -s "$disk" ]; then
  size_opt="--bluestore-block-size $file_size"
fi
# shellcheck disable=SC2086
ceph-osd --cluster ceph --osd-objectstore bluestore --mkfs -i "$id" --osd-uuid "$uuid" \
  --monmap "$dir/activate.monmap" --keyfile "$dir/keyfile.tmp" --osd-data "$dir" \
  --setuser ceph --setgroup ceph $size_opt >&2
rm -f "$dir/keyfile.tmp" "$dir/activate.monmap"
echo "$id"
