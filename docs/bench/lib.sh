# Shared by the benchmark scripts in this folder: source it.

# rss_anon prints the anonymous memory (KiB) of process $1, 0 if gone.
rss_anon() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# measure runs a command and prints "ms peak_kib": its wall time and its
# peak RssAnon, sampled every 5 ms. Dirty pages left by the previous
# command are written out first (sync), so a command does not pay for the
# writeback of the one before it: age -e does not sync its output, and the
# kernel would flush it during the next run.
measure() {
	local start end pid peak=0 cur
	sync
	start=$(date +%s%N)
	"$@" >/dev/null 2>&1 &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		cur=$(rss_anon "$pid")
		[ -n "$cur" ] && [ "$cur" -gt "$peak" ] && peak=$cur
		sleep 0.005
	done
	wait "$pid"
	end=$(date +%s%N)
	echo "$(((end - start) / 1000000)) $peak"
}

# median prints the median of the numbers on stdin, one per line.
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
