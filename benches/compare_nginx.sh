#!/usr/bin/env bash
# Load comparison, not a test: bcs against nginx on loopback, side by side in one run, and optionally against
# a second bcs binary (an earlier build) in the same run.
#
#   benches/compare_nginx.sh            # 3 interleaved rounds, 10 s of wrk each
#   ROUNDS=1 DURATION=3 benches/compare_nginx.sh
#   BCS=/tmp/bcs-new benches/compare_nginx.sh          # a bcs binary built elsewhere (no build here)
#   BASE=/tmp/bcs-before benches/compare_nginx.sh      # and an earlier build beside it, as "base"
#
# An earlier build comes from a worktree: git worktree add ../wt-base <commit>; (cd ../wt-base && cargo build
# --release --bin bcs); BASE=../wt-base/target/release/bcs benches/compare_nginx.sh
#
# Small file: wrk, 1 thread, 50 keep-alive connections, 1 KiB file -> requests/s.
# Large file: curl, one stream, 1 GiB file, three times per round -> MB/s, and the server's CPU time per GiB
# sent (user + system, its processes summed: steadier than MB/s on a shared machine); and three streams at once.
# Peak RSS: each server's VmHWM after all loads (nginx's processes summed; nginx serves HTTP and HTTPS from the
# same workers, each bcs from one process per scheme).
# Idle connections: 10,000 kept-alive connections after one request each -> the servers' RSS with them
# open (benches/idle_connections.py; IDLE=0 skips it).
# nginx runs with 2 workers and sendfile, once with tcp_nopush on and once off ("on" favours small
# files, "off" single streams). Access logs are off on all sides. Prints medians and ratios against nginx
# (its better variant per measure). bcs_nosendfile is the same bcs with --no-sendfile (plain HTTP only).
# HTTPS: the same measurements against bcs and nginx serving one self-signed P-256 certificate, and each
# server's one-stream MB/s as a fraction of what one core encrypts with the negotiated cipher
# (`openssl speed -evp`, 16 KiB records: the size of a TLS record).
# Needs: nginx, wrk, curl, openssl (Debian packages of those names). Everything binds 127.0.0.1 and stops by itself.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
IDLE=${IDLE:-10000}
cd "$(dirname "$0")/.."
for tool in nginx wrk curl openssl; do
    command -v "$tool" >/dev/null || { echo "compare_nginx: $tool is not installed" >&2; exit 1; }
done

if [ -z "${BCS:-}" ]; then
    cargo build --release --quiet --bin bcs
    BCS="${CARGO_TARGET_DIR:-target}/release/bcs"
fi
if [ -n "${BASE:-}" ] && [ ! -x "$BASE" ]; then
    echo "compare_nginx: BASE=$BASE is not an executable" >&2
    exit 1
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

# One self-signed certificate for all servers' HTTPS.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
chmod 644 "$work/key.pem"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_nopush_on=$(free_port)
port_nopush_off=$(free_port)
port_nginx_tls=$(free_port)

cat >"$work/nginx/nginx.conf" <<CONF
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
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
pids+=($!)
nginx_pid=$!

# Each bcs build: one process for HTTP, one for HTTPS.
declare -A url tls_url pid_of tls_pid_of
declare -A binary=([bcs]="$BCS")
builds=(bcs)
if [ -n "${BASE:-}" ]; then
    binary[base]="$BASE"
    builds+=(base)
fi
for b in "${builds[@]}"; do
    port=$(free_port)
    BCS_LOG=warn,rustls=error "${binary[$b]}" host --bind 127.0.0.1 --url "http://+:$port/b/" "$work/files" >/dev/null &
    pids+=($!)
    pid_of[$b]=$!
    url[$b]="http://127.0.0.1:$port/b"
    port=$(free_port)
    BCS_LOG=warn,rustls=error "${binary[$b]}" host --bind 127.0.0.1 --url "https://+:$port/b/" \
        --cert "$work/cert.pem" --key "$work/key.pem" "$work/files" >/dev/null &
    pids+=($!)
    tls_pid_of[$b]=$!
    tls_url[$b]="https://127.0.0.1:$port/b"
done
# And this build with --no-sendfile: plain HTTP read and written out, as HTTPS is (which is faster depends
# on the machine).
port=$(free_port)
BCS_LOG=warn "$BCS" host --no-sendfile --bind 127.0.0.1 --url "http://+:$port/b/" "$work/files" >/dev/null &
pids+=($!)
pid_of[bcs_nosendfile]=$!
url[bcs_nosendfile]="http://127.0.0.1:$port/b"
url[nginx_nopush_on]="http://127.0.0.1:$port_nopush_on/b"
url[nginx_nopush_off]="http://127.0.0.1:$port_nopush_off/b"
pid_of[nginx_nopush_on]=$nginx_pid
pid_of[nginx_nopush_off]=$nginx_pid
tls_url[nginx]="https://127.0.0.1:$port_nginx_tls/b"
tls_pid_of[nginx]=$nginx_pid
servers=("${builds[@]}" bcs_nosendfile nginx_nopush_on nginx_nopush_off)
tls_servers=("${builds[@]}" nginx)

wait_for() {
    for _ in $(seq 100); do curl -sfk -o /dev/null "$1" && return 0; sleep 0.1; done
    echo "compare_nginx: $1 did not come up" >&2; exit 1
}
for s in "${servers[@]}"; do wait_for "${url[$s]}/small.bin"; done
for s in "${tls_servers[@]}"; do wait_for "${tls_url[$s]}/small.bin"; done

# What one core encrypts with the cipher each HTTPS server negotiates with curl, in MB/s.
declare -A cipher crypto_mbs
for s in "${tls_servers[@]}"; do
    cipher[$s]=$(curl -sk --http1.1 -o /dev/null -v "${tls_url[$s]}/small.bin" 2>&1 |
        sed -n 's/.*SSL connection using [^ ]* \/ \([^ ]*\).*/\1/p' | head -1)
done
evp_of() {
    case "$1" in
        *AES_128_GCM* | *AES128-GCM*) echo aes-128-gcm ;;
        *AES_256_GCM* | *AES256-GCM*) echo aes-256-gcm ;;
        *CHACHA20*) echo chacha20-poly1305 ;;
        *) echo "" ;;
    esac
}
declare -A speed_of
for s in "${tls_servers[@]}"; do
    evp=$(evp_of "${cipher[$s]}")
    if [ -z "$evp" ]; then crypto_mbs[$s]=0; continue; fi
    if [ -z "${speed_of[$evp]:-}" ]; then
        # The last figure of the last line: thousands of bytes per second at 16384-byte blocks.
        speed_of[$evp]=$(openssl speed -evp "$evp" -bytes 16384 -seconds 3 2>/dev/null | tail -1 |
            awk '{v = $NF; sub(/k$/, "", v); printf "%.0f", v / 1000}')
    fi
    crypto_mbs[$s]=${speed_of[$evp]}
done

# Warm the page cache for the big file once, through each server.
for s in "${servers[@]}"; do curl -s -o /dev/null "${url[$s]}/big.bin"; done

declare -A rps mbs mbs3 tls_rps tls_mbs tls_mbs3 cpu_ms
# A server's processes (nginx's master and workers), and their CPU time so far in clock ticks.
procs() { echo "$1 $(pgrep -P "$1" | tr '\n' ' ')"; }
cpu_ticks_of() { for p in $(procs "$1"); do awk '{print $14 + $15}' "/proc/$p/stat"; done | awk '{s += $1} END {print s}'; }
hz=$(getconf CLK_TCK)
# Three downloads of the big file at once -> their summed MB/s.
three() {
    for _ in 1 2 3; do curl -s "$@" -o /dev/null -w '%{size_download} %{time_total}\n' & done | {
        awk '{bytes += $1; if ($2 > secs) secs = $2} END {printf "%.0f", bytes / secs / 1e6}'
    }
    wait
}
for round in $(seq "$ROUNDS"); do
    for s in "${tls_servers[@]}"; do
        # HTTPS: keep-alive connections (wrk), and one TLS stream of the big file (curl, HTTP/1.1 all).
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
            awk '{bytes += $1; secs += $2} END {printf "%.0f", bytes / secs / 1e6}')
        c1=$(cpu_ticks_of "${pid_of[$s]}")
        c=$(awk -v t=$((c1 - c0)) -v hz="$hz" 'BEGIN {printf "%.0f", t * 1000 / hz / 3}')
        b3=$(three "${url[$s]}/big.bin")
        cpu_ms[$s]+="$c "
        rps[$s]+="$r "
        mbs[$s]+="$b "
        mbs3[$s]+="$b3 "
        echo "round $round  $s: ${r} req/s (1 KiB), $b MB/s (1 GiB), $b3 MB/s (3 streams), server CPU $c ms/GiB"
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b ? a / b : 0}'; }
echo
printf '%-18s %12s %8s %11s %8s %11s %8s %9s\n' server "1KiB req/s" "÷ nginx" "1GiB MB/s" "÷ nginx" "3x MB/s" "÷ nginx" "CPU ms/GiB"
best() { awk -v a="$1" -v b="$2" 'BEGIN {print (a > b) ? a : b}'; }
base_rps=$(best "$(echo "${rps[nginx_nopush_on]}" | median)" "$(echo "${rps[nginx_nopush_off]}" | median)")
base_mbs=$(best "$(echo "${mbs[nginx_nopush_on]}" | median)" "$(echo "${mbs[nginx_nopush_off]}" | median)")
base_mbs3=$(best "$(echo "${mbs3[nginx_nopush_on]}" | median)" "$(echo "${mbs3[nginx_nopush_off]}" | median)")
for s in "${servers[@]}"; do
    r=$(echo "${rps[$s]}" | median); m=$(echo "${mbs[$s]}" | median); m3=$(echo "${mbs3[$s]}" | median)
    printf '%-18s %12.0f %8s %11.0f %8s %11.0f %8s %9s\n' "$s" "$r" "$(ratio "$r" "$base_rps")" "$m" \
        "$(ratio "$m" "$base_mbs")" "$m3" "$(ratio "$m3" "$base_mbs3")" "$(echo "${cpu_ms[$s]}" | median)"
done
echo "(HTTP; medians of $ROUNDS interleaved rounds; ratios against nginx's better variant per column)"
echo
printf '%-18s %12s %8s %11s %8s %11s %8s  %s\n' https "1KiB req/s" "÷ nginx" "1GiB MB/s" "÷ nginx" "3x MB/s" "÷ nginx" "1 stream ÷ one core's cipher"
base_rps=$(echo "${tls_rps[nginx]}" | median)
base_mbs=$(echo "${tls_mbs[nginx]}" | median)
base_mbs3=$(echo "${tls_mbs3[nginx]}" | median)
for s in "${tls_servers[@]}"; do
    r=$(echo "${tls_rps[$s]}" | median); m=$(echo "${tls_mbs[$s]}" | median); m3=$(echo "${tls_mbs3[$s]}" | median)
    printf '%-18s %12.0f %8s %11.0f %8s %11.0f %8s  %s of %s MB/s (%s)\n' "$s" "$r" "$(ratio "$r" "$base_rps")" "$m" \
        "$(ratio "$m" "$base_mbs")" "$m3" "$(ratio "$m3" "$base_mbs3")" "$(ratio "$m" "${crypto_mbs[$s]}")" \
        "${crypto_mbs[$s]}" "${cipher[$s]:-unknown cipher}"
done
echo "(https: the same certificate, P-256; nginx with tcp_nopush on and a shared session cache)"
echo
# VmHWM (peak RSS) of a server's processes, in KiB: nginx's master and workers summed.
hwm() { for p in $(procs "$1"); do awk '/^VmHWM:/ {print $2}' "/proc/$p/status"; done | awk '{s += $1} END {print s}'; }
hn=$(hwm "$nginx_pid")
printf '%-44s %10s %10s %8s\n' "peak RSS after the loads (KiB)" bcs nginx ratio
for b in "${builds[@]}"; do
    h=$(hwm "${pid_of[$b]}"); t=$(hwm "${tls_pid_of[$b]}")
    printf '%-44s %10.0f %10.0f %8s\n' "$b, HTTP" "$h" "$hn" "$(ratio "$h" "$hn")"
    printf '%-44s %10.0f %10.0f %8s\n' "$b, HTTPS" "$t" "$hn" "$(ratio "$t" "$hn")"
done
if [ "$IDLE" -gt 0 ]; then
    in=$(python3 benches/idle_connections.py --port "$port_nopush_on" --path /b/small.bin \
        --pids "$(procs "$nginx_pid" | tr ' ' ',')" --count "$IDLE" | awk '{print $3}')
    printf '%-44s %10s %10s %8s\n' "RSS with $IDLE idle keep-alive conns (KiB)" bcs nginx ratio
    for b in "${builds[@]}"; do
        port=${url[$b]#http://127.0.0.1:}; port=${port%/b}
        ib=$(python3 benches/idle_connections.py --port "$port" --path /b/small.bin --pids "${pid_of[$b]}" \
            --count "$IDLE" | awk '{print $3}')
        printf '%-44s %10.0f %10.0f %8s\n' "$b" "$ib" "$in" "$(ratio "$ib" "$in")"
    done
fi
read -r total0 steal0 <<<"$ticks_start"
read -r total1 steal1 <<<"$(cpu_ticks)"
echo "steal time over the run: $(awk -v s=$((steal1 - steal0)) -v t=$((total1 - total0)) 'BEGIN {printf "%.1f", t ? 100 * s / t : 0}')% of CPU time"
