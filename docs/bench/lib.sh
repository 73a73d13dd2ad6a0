# Shared by the benchmark scripts in this folder: source it.
#
# The sampling below uses bash builtins only. Forking awk and sleep every
# few milliseconds took a large share of one of this machine's two cores,
# and a measured command that uses both cores paid for it.

# Numbers with a dot whatever the user's locale ($EPOCHREALTIME, awk).
export LC_ALL=C

# nap sleeps $1 seconds without forking: read times out on a pipe nobody
# writes to.
exec {_nap_fd}<> <(:)
nap() { read -r -t "$1" -u "$_nap_fd" || true; }

# rss_anon sets RSS_ANON to the anonymous memory (KiB) of process $1, 0 if
# it is gone. statm's resident minus shared pages is RssAnon (shared counts
# file and shmem pages), and it is one short line to read.
rss_anon() {
	local size resident shared rest
	RSS_ANON=0
	read -r size resident shared rest 2>/dev/null <"/proc/$1/statm" || return 0
	RSS_ANON=$(((resident - shared) * _page_kib))
}
_page_kib=$(($(getconf PAGESIZE) / 1024))

# settle puts the machine in the same state before every measured command:
# dirty pages written out (sync), so a command does not pay for the
# writeback of the one before it (age -e does not sync its output, and the
# kernel would flush it during the next run); then, when root, the page
# cache dropped and the files named in $PREREAD read back in.
#
# Dropping matters on a VM whose balloon reports free memory to the host
# (virtio-balloon free page reporting, as on the development machine):
# there the first touch of reported memory costs a host fault, ~2.7 s of
# system time per GiB measured. Without the drop, a command that first
# deletes its previous output (age -e -o, age -d -o) wrote into pages just
# freed while one that grows a file (medvault add appending to the vault)
# wrote into reported ones, and its figure swung by 2-3x from run to run.
# After the drop, every command writes into pages freed a moment before,
# and reads its input from the page cache, not the disk.
settle() {
	sync
	if [ -w /proc/sys/vm/drop_caches ]; then
		echo 1 >/proc/sys/vm/drop_caches
		local f
		for f in ${PREREAD:-}; do cat "$f" >/dev/null; done
	fi
}

# measure runs a command and prints "ms peak_kib": its wall time and its
# peak RssAnon, sampled every 5 ms, after settle.
measure() {
	local start end pid peak=0
	settle
	start=$(date +%s%N)
	"$@" >/dev/null 2>&1 &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		rss_anon "$pid"
		[ "$RSS_ANON" -gt "$peak" ] && peak=$RSS_ANON
		nap 0.005
	done
	wait "$pid"
	end=$(date +%s%N)
	echo "$(((end - start) / 1000000)) $peak"
}

# median prints the median of the numbers on stdin, one per line.
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
