#!/usr/bin/env bash
# Load comparison, not a test: bcs against nginx on loopback, side by side in one run.
#
#   benches/compare_nginx.sh            # 3 interleaved rounds, 10 s of wrk each
#   ROUNDS=1 DURATION=3 benches/compare_nginx.sh
#   BCS=/tmp/bcs-before benches/compare_nginx.sh   # a bcs binary built elsewhere (no build here)
#
# Small file: wrk, 1 thread, 50 keep-alive connections, 1 KiB file -> requests/s; then each server's peak
# RSS (VmHWM, summed over nginx's processes).
# Large file: curl, one stream, 1 GiB file, three times per round -> MB/s, and the server's CPU time per GiB
# sent (user + system, its processes summed: steadier than MB/s on a shared machine); and three streams at once.
# Idle connections: 10,000 kept-alive connections after one request each -> the servers' RSS with them
# open (benches/idle_connections.py; IDLE=0 skips it).
# nginx runs with 2 workers and sendfile, once with tcp_nopush on and once off ("on" favours small
# files, "off" single streams). Access logs are off on both sides. Prints medians and bcs/nginx ratios.
# HTTPS: the same two measurements against bcs and nginx serving one self-signed P-256 certificate.
# Needs: nginx, wrk, curl, openssl (Debian packages of those names). Everything binds 127.0.0.1 and stops by itself.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
IDLE=${IDLE:-10000}
cd "$(dirname "$0")/.."
for tool in nginx wrk curl; do
    command -v "$tool" >/dev/null || { echo "compare_nginx: $tool is not installed" >&2; exit 1; }
done

if [ -z "${BCS:-}" ]; then
    cargo build --release --quiet --bin bcs
    BCS="${CARGO_TARGET_DIR:-target}/release/bcs"
fi
# CPU time stolen by the hypervisor over the whole run (a shared machine's figures are only as good as this).
cpu_ticks() { awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8+$9, $9}' /proc/stat; }
ticks_start=$(cpu_ticks)
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"
mkdir -p "$work/files" "$work/nginx"
head -c 1024 /dev/urandom >"$work/files/small.bin"
dd if=/dev/urandom of="$work/files/big.bin" bs=1M count=1024 status=none
chmod 644 "$work/files/"*

# One self-signed certificate for both servers' HTTPS.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
chmod 644 "$work/key.pem"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_bcs=$(free_port)
port_nopush_on=$(free_port)
port_nopush_off=$(free_port)
port_bcs_tls=$(free_port)
port_nginx_tls=$(free_port)

cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 2;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
daemon off;
events { worker_connections 16384; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    types { application/octet-stream bin; }
    server { listen 127.0.0.1:$port_nopush_on;  tcp_nopush on;  location /b/ { alias $work/files/; } }
    server { listen 127.0.0.1:$port_nopush_off; tcp_nopush off; location /b/ { alias $work/files/; } }
    server {
        listen 127.0.0.1:$port_nginx_tls ssl; tcp_nopush on;
        ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m;
        location /b/ { alias $work/files/; }
    }
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
pids+=($!)
nginx_pid=$!
BCS_LOG=warn,rustls=error "$BCS" host --bind 127.0.0.1 --url "http://+:$port_bcs/b/" "$work/files" >/dev/null &
pids+=($!)
bcs_pid=$!
BCS_LOG=warn,rustls=error "$BCS" host --bind 127.0.0.1 --url "https://+:$port_bcs_tls/b/" \
    --cert "$work/cert.pem" --key "$work/key.pem" "$work/files" >/dev/null &
pids+=($!)

wait_for() {
    for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
    echo "compare_nginx: $1 did not come up" >&2; exit 1
}
declare -A url=(
    [bcs]="http://127.0.0.1:$port_bcs/b"
    [nginx_nopush_on]="http://127.0.0.1:$port_nopush_on/b"
    [nginx_nopush_off]="http://127.0.0.1:$port_nopush_off/b"
)
servers=(bcs nginx_nopush_on nginx_nopush_off)
for s in "${servers[@]}"; do wait_for "${url[$s]}/small.bin"; done
declare -A tls_url=(
    [bcs]="https://127.0.0.1:$port_bcs_tls/b"
    [nginx]="https://127.0.0.1:$port_nginx_tls/b"
)
for s in bcs nginx; do
    for _ in $(seq 100); do curl -sfk -o /dev/null "${tls_url[$s]}/small.bin" && break; sleep 0.1; done
done

# Warm the page cache for the big file once, through each server.
for s in "${servers[@]}"; do curl -s -o /dev/null "${url[$s]}/big.bin"; done

declare -A rps mbs mbs3 tls_rps tls_mbs tls_mbs3 cpu_ms
# A server's processes (nginx's master and workers), and their CPU time so far in clock ticks.
procs() { echo "$1 $(pgrep -P "$1" | tr '\n' ' ')"; }
cpu_ticks_of() { for p in $(procs "$1"); do awk '{print $14 + $15}' "/proc/$p/stat"; done | awk '{s += $1} END {print s}'; }
declare -A pid_of=([bcs]=$bcs_pid [nginx_nopush_on]=$nginx_pid [nginx_nopush_off]=$nginx_pid)
hz=$(getconf CLK_TCK)
# Three downloads of the big file at once -> their summed MB/s.
three() {
    for _ in 1 2 3; do curl -s "$@" -o /dev/null -w '%{size_download} %{time_total}\n' & done | {
        awk '{bytes += $1; if ($2 > secs) secs = $2} END {printf "%.0f", bytes / secs / 1e6}'
    }
    wait
}
for round in $(seq "$ROUNDS"); do
    for s in bcs nginx; do
        # HTTPS: keep-alive connections (wrk), and one TLS stream of the big file (curl, HTTP/1.1 both).
        r=$(wrk -t1 -c50 -d"${DURATION}s" "${tls_url[$s]}/small.bin" | awk '/^Requests\/sec:/ {print $2}')
        b=$(curl -sk --http1.1 -o /dev/null -w '%{size_download} %{time_total}\n' "${tls_url[$s]}/big.bin" |
            awk '{printf "%.0f", $1 / $2 / 1e6}')
        b3=$(three -k --http1.1 "${tls_url[$s]}/big.bin")
        tls_rps[$s]+="$r "
        tls_mbs[$s]+="$b "
        tls_mbs3[$s]+="$b3 "
        echo "round $round  $s https: ${r} req/s (1 KiB), $b MB/s (1 GiB), $b3 MB/s (3 streams)"
    done
    for s in "${servers[@]}"; do
        r=$(wrk -t1 -c50 -d"${DURATION}s" "${url[$s]}/small.bin" | awk '/^Requests\/sec:/ {print $2}')
        # Three back-to-back single-stream downloads: one 1 GiB download lasts well under a second here.
        c0=$(cpu_ticks_of "${pid_of[$s]}")
        b=$(for _ in 1 2 3; do curl -s -o /dev/null -w '%{size_download} %{time_total}\n' "${url[$s]}/big.bin"; done |
            awk '{bytes += $1; secs += $2} END {printf "%.0f", bytes / secs}')
        c1=$(cpu_ticks_of "${pid_of[$s]}")
        c=$(awk -v t=$((c1 - c0)) -v hz="$hz" 'BEGIN {printf "%.0f", t * 1000 / hz / 3}')
        b3=$(three "${url[$s]}/big.bin")
        cpu_ms[$s]+="$c "
        rps[$s]+="$r "
        mbs[$s]+="$(awk -v b="$b" 'BEGIN {printf "%.0f", b / 1e6}') "
        mbs3[$s]+="$b3 "
        echo "round $round  $s: ${r} req/s (1 KiB), $(awk -v b="$b" 'BEGIN {printf "%.0f", b / 1e6}') MB/s (1 GiB), $b3 MB/s (3 streams), server CPU $c ms/GiB"
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo
printf '%-18s %14s %12s %14s %12s\n' server "1KiB req/s" "÷ nginx(on)" "1GiB MB/s" "÷ nginx(off)"
base_rps=$(echo "${rps[nginx_nopush_on]}" | median)
base_mbs=$(echo "${mbs[nginx_nopush_off]}" | median)
for s in "${servers[@]}"; do
    r=$(echo "${rps[$s]}" | median)
    m=$(echo "${mbs[$s]}" | median)
    printf '%-18s %14.0f %12.2f %14.0f %12.2f\n' "$s" "$r" "$(awk -v a="$r" -v b="$base_rps" 'BEGIN {print a / b}')" \
        "$m" "$(awk -v a="$m" -v b="$base_mbs" 'BEGIN {print a / b}')"
done
echo "(medians of $ROUNDS interleaved rounds; ratios against nginx tcp_nopush on for req/s, off for MB/s: each peer's best)"
printf 'server CPU per GiB sent (one stream, ms): %s\n' "$(for s in "${servers[@]}"; do printf '%s %s  ' "$s" "$(echo "${cpu_ms[$s]}" | median)"; done)"
echo
printf '%-18s %14s %12s %14s %12s\n' "https" "1KiB req/s" "÷ nginx" "1GiB MB/s" "÷ nginx"
base_rps=$(echo "${tls_rps[nginx]}" | median)
base_mbs=$(echo "${tls_mbs[nginx]}" | median)
for s in bcs nginx; do
    r=$(echo "${tls_rps[$s]}" | median)
    m=$(echo "${tls_mbs[$s]}" | median)
    printf '%-18s %14.0f %12.2f %14.0f %12.2f\n' "$s" "$r" "$(awk -v a="$r" -v b="$base_rps" 'BEGIN {print a / b}')" \
        "$m" "$(awk -v a="$m" -v b="$base_mbs" 'BEGIN {print a / b}')"
done
echo "(https: the same certificate, P-256; nginx with tcp_nopush on and a shared session cache)"
echo
# VmHWM (peak RSS) of a server's processes, in KiB: nginx's master and workers summed.
hwm() { for p in $(procs "$1"); do awk '/^VmHWM:/ {print $2}' "/proc/$p/status"; done | awk '{s += $1} END {print s}'; }
b3=$(echo "${mbs3[bcs]}" | median); n3=$(echo "${mbs3[nginx_nopush_off]}" | median)
t3=$(echo "${tls_mbs3[bcs]}" | median); u3=$(echo "${tls_mbs3[nginx]}" | median)
hb=$(hwm "$bcs_pid"); hn=$(hwm "$nginx_pid")
printf '%-44s %10s %10s %8s\n' measure bcs nginx ratio
printf '%-44s %10.0f %10.0f %8.2f\n' "HTTP 1 GiB, three streams (MB/s)" "$b3" "$n3" "$(awk -v a="$b3" -v b="$n3" 'BEGIN {print a / b}')"
printf '%-44s %10.0f %10.0f %8.2f\n' "HTTPS 1 GiB, three streams (MB/s)" "$t3" "$u3" "$(awk -v a="$t3" -v b="$u3" 'BEGIN {print a / b}')"
printf '%-44s %10.0f %10.0f %8.2f\n' "peak RSS after the loads (KiB)" "$hb" "$hn" "$(awk -v a="$hb" -v b="$hn" 'BEGIN {print a / b}')"
if [ "$IDLE" -gt 0 ]; then
    ib=$(python3 benches/idle_connections.py --port "$port_bcs" --path /b/small.bin --pids "$bcs_pid" --count "$IDLE" | awk '{print $3}')
    in=$(python3 benches/idle_connections.py --port "$port_nopush_on" --path /b/small.bin \
        --pids "$(procs "$nginx_pid" | tr ' ' ',')" --count "$IDLE" | awk '{print $3}')
    printf '%-44s %10.0f %10.0f %8.2f\n' "RSS with $IDLE idle keep-alive conns (KiB)" "$ib" "$in" "$(awk -v a="$ib" -v b="$in" 'BEGIN {print a / b}')"
fi
read -r total0 steal0 <<<"$ticks_start"
read -r total1 steal1 <<<"$(cpu_ticks)"
echo "steal time over the run: $(awk -v s=$((steal1 - steal0)) -v t=$((total1 - total0)) 'BEGIN {printf "%.1f", t ? 100 * s / t : 0}')% of CPU time"
