# shellcheck shell=bash
# The real node of the local control plane, sourced by scripts/k8s: containerd (Debian's 1.6,
# runc, bridge CNI), a kubelet and kube-proxy built from the same wrapper module as the
# apiserver, CoreDNS on the host serving cluster.local from the API (Service kube-dns), a pause
# image compiled here, and the product's images loaded from podman's storage (scripts/images).
# Everything lives under $STATE/node; `down` stops it and undoes what it set up on the machine
# (mounts, network namespaces, the bridge, iptables chains, sysctls). docs/local-kubernetes.md.

NODE_NAME=${SMARTGRID_NODE_NAME:-real-node-0}
NODE_POD_CIDR=${SMARTGRID_NODE_POD_CIDR:-10.245.0.0/24}
NODE_BRIDGE=${SMARTGRID_NODE_BRIDGE:-cni0}
KUBELET_PORT=${SMARTGRID_KUBELET_PORT:-10250}
KUBELET_HEALTHZ_PORT=${SMARTGRID_KUBELET_HEALTHZ_PORT:-10248}
KUBE_PROXY_HEALTHZ_PORT=${SMARTGRID_KUBE_PROXY_PORT:-10256}
KUBE_PROXY_METRICS_PORT=$((KUBE_PROXY_HEALTHZ_PORT + 1))
DNS_PORT=${SMARTGRID_DNS_PORT:-10053}
DNS_READY_PORT=$((DNS_PORT + 1))
CLUSTER_DNS=10.96.0.10
COREDNS_VERSION=${SMARTGRID_COREDNS_VERSION:-v1.12.4}
# Pods of the control-plane tests land on the kwok nodes; only pods that tolerate this taint
# (and select type=real) run here: `scripts/k8s node-namespace NAME` makes a namespace whose
# pods do (admission plugins PodNodeSelector + PodTolerationRestriction).
NODE_TAINT_KEY=smartgrid.io/real-node
PAUSE_IMAGE=localhost/smartgrid/pause:3.10
NODE=$STATE/node
CONTAINERD_SOCK=$NODE/containerd/containerd.sock
NODE_PROCS=(containerd kubelet kube-proxy coredns)
# Changed on the machine while the node runs; the values found before are restored by `down`.
NODE_SYSCTLS=(net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1)
KUBELET_SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops)

node_ip() {
  if [[ -n ${SMARTGRID_NODE_IP:-} ]]; then echo "$SMARTGRID_NODE_IP"; return; fi
  local ip
  ip=$(ip -4 route get 192.0.2.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1)
  [[ -n $ip ]] || ip=$(ip -4 -o addr show scope global | awk '{sub(/\/.*/, "", $4); print $4; exit}')
  [[ -n $ip ]] || die "no IPv4 address for the node (not loopback): set SMARTGRID_NODE_IP"
  echo "$ip"
}

node_requirements() {
  local missing=() c
  for c in containerd containerd-shim-runc-v2 runc ctr iptables ip6tables conntrack podman gcc; do
    command -v "$c" >/dev/null || missing+=("$c")
  done
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] || missing+=(/usr/lib/cni/bridge)
  [[ -f /usr/lib/x86_64-linux-gnu/libc.a || -f /usr/lib/aarch64-linux-gnu/libc.a ]] || missing+=(libc.a)
  ((${#missing[@]} == 0)) && return 0
  die "the node needs ${missing[*]}: apt-get install containerd runc containernetworking-plugins iptables conntrack podman gcc libc6-dev"
}

install_coredns() {
  if have coredns "$COREDNS_VERSION"; then log "coredns cached ($COREDNS_VERSION)"; return 0; fi
  go_env
  local t0=$SECONDS
  log "building coredns $COREDNS_VERSION"
  mkdir -p "$BIN"
  GOBIN=$BIN CGO_ENABLED=0 GOFLAGS='' go install -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
  stamp coredns "$COREDNS_VERSION"
  log "coredns built in $((SECONDS - t0))s"
}

# kubernetes' own pause (build/pause/linux/pause.c of the module), compiled statically.
install_pause() {
  if have pause "$K8S_VERSION"; then return 0; fi
  go_env
  local dir
  dir=$(cd "$CACHE" && GOFLAGS='' go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' | head -1)
  [[ -f $dir/build/pause/linux/pause.c ]] || die "no build/pause/linux/pause.c in $dir"
  gcc -Os -Wall -Werror -static -DVERSION="$K8S_VERSION-smartgrid" -o "$BIN/pause.tmp" "$dir/build/pause/linux/pause.c"
  strip "$BIN/pause.tmp" 2>/dev/null || true
  mv "$BIN/pause.tmp" "$BIN/pause"
  stamp pause "$K8S_VERSION"
  log "pause compiled from $dir/build/pause/linux/pause.c"
}

install_node() {
  install_coredns
  install_pause
}

ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

# podman with the configuration and storage of scripts/images.
podman_() { (eval "$("$REPO/scripts/images" env)"; podman "$@"); }

node_pki() {
  local d=$STATE/pki ip=$1
  (
    cd "$d"
    sign() { # name subject extensions
      [[ -f $1.crt ]] && return 0
      openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      printf '%b\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -out "$1.crt" -extfile "$1.ext" 2>/dev/null
      rm -f "$1.csr" "$1.ext"; chmod 600 "$1.key"
    }
    local client="basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth"
    sign "node-$NODE_NAME" "/O=system:nodes/CN=system:node:$NODE_NAME" "$client"
    sign kube-proxy "/CN=system:kube-proxy" "$client"
    sign coredns "/CN=smartgrid:coredns" "$client"
    sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
    # The apiserver's serving certificate also names the node IP (pods reach it there).
    if [[ $(cat apiserver.ip 2>/dev/null) != "$ip" ]]; then
      rm -f apiserver-node.crt apiserver-node.key
      sign apiserver-node "/CN=kube-apiserver" \
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:$ip,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
      echo "$ip" >apiserver.ip
    fi
  )
}

# The apiserver's flags for the node: reachable from pods on the node IP (the kubernetes
# Service's endpoint), able to reach the kubelet (logs, exec, port-forward), and the
# admission plugins that keep a namespace's pods on the real node or off it.
apiserver_node_args() {
  local P=$STATE/pki ip=$1
  printf '%s\n' --bind-address=0.0.0.0 --advertise-address="$ip" --endpoint-reconciler-type=lease \
    --tls-cert-file="$P/apiserver-node.crt" --tls-private-key-file="$P/apiserver-node.key" \
    --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$P/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --enable-admission-plugins=PodNodeSelector,PodTolerationRestriction
}

sysctl_save_and_set() {
  local f=$NODE/sysctl.saved kv k
  if [[ ! -f $f ]]; then
    for k in "${NODE_SYSCTLS[@]%%=*}" "${KUBELET_SYSCTLS[@]}"; do
      echo "$k=$(sysctl -n "$k" 2>/dev/null)"
    done >"$f.tmp"
    mv "$f.tmp" "$f"
  fi
  for kv in "${NODE_SYSCTLS[@]}"; do sysctl -qw "$kv" >/dev/null || die "sysctl -w $kv failed"; done
}

sysctl_restore() {
  local f=$NODE/sysctl.saved kv
  [[ -f $f ]] || return 0
  while IFS= read -r kv; do
    if [[ $kv == *=?* ]]; then sysctl -qw "$kv" >/dev/null 2>&1 || true; fi
  done <"$f"
  log "sysctls restored: $(paste -sd' ' "$f")"
  rm -f "$f"
}

write_containerd_config() {
  local c=$NODE/containerd
  mkdir -p "$c/root" "$c/state" "$NODE/cni/conf" "$NODE/cni/ipam"
  cat >"$c/config.toml" <<TOML
# Written by scripts/k8s (the real node).
version = 2
root = "$c/root"
state = "$c/state"
oom_score = 0
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE/cni/conf"
    max_conf_num = 1
TOML
  cat >"$NODE/cni/conf/10-smartgrid.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "smartgrid",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE/cni/ipam",
        "ranges": [[{"subnet": "$NODE_POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
JSON
}

write_node_configs() {
  local ip=$1 P=$STATE/pki
  write_node_kubeconfig "$NODE/kubelet.kubeconfig" "node-$NODE_NAME"
  write_node_kubeconfig "$NODE/kube-proxy.kubeconfig" kube-proxy
  write_node_kubeconfig "$NODE/coredns.kubeconfig" coredns
  mkdir -p "$NODE/kubelet" "$NODE/pod-logs" "$NODE/kubelet-plugins"
  cat >"$NODE/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
protectKernelDefaults: false
oomScoreAdj: 0
clusterDNS: [$CLUSTER_DNS]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podLogsDir: $NODE/pod-logs
volumePluginDir: $NODE/kubelet-plugins
registerWithTaints:
- {key: $NODE_TAINT_KEY, value: "true", effect: NoSchedule}
# Images come from scripts/images, never from a registry: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}
serializeImagePulls: false
shutdownGracePeriod: 0s
maxPods: 110
rotateCertificates: false
YAML
  cat >"$NODE/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $NODE/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $NODE_POD_CIDR
healthzBindAddress: 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$KUBE_PROXY_METRICS_PORT
nodePortAddresses: [$ip/32]
# 0: leave the machine's conntrack settings as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
  cat >"$NODE/Corefile" <<COREFILE
cluster.local:$DNS_PORT in-addr.arpa:$DNS_PORT ip6.arpa:$DNS_PORT {
    bind $ip
    errors
    ready 127.0.0.1:$DNS_READY_PORT
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $NODE/coredns.kubeconfig smartgrid-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
.:$DNS_PORT {
    bind $ip
    errors
    forward . /etc/resolv.conf
    cache 30
}
COREFILE
}

write_node_kubeconfig() { # file cert-name
  local f=$1 u=$2 d=$STATE/pki
  cat >"$f.tmp" <<KC
apiVersion: v1
kind: Config
clusters:
- name: smartgrid-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$d/ca.crt")
users:
- name: $u
  user:
    client-certificate-data: $(base64 -w0 <"$d/$u.crt")
    client-key-data: $(base64 -w0 <"$d/$u.key")
contexts:
- name: smartgrid-local
  context:
    cluster: smartgrid-local
    user: $u
current-context: smartgrid-local
KC
  chmod 600 "$f.tmp"; mv "$f.tmp" "$f"
}

# CoreDNS's rights, and the kube-dns Service whose endpoint is CoreDNS on the node IP.
apply_dns_objects() {
  local ip=$1
  kc apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "smartgrid:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "smartgrid:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "smartgrid:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "smartgrid:coredns"}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  clusterIP: $CLUSTER_DNS
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: $DNS_PORT}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: $DNS_PORT}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-host
  namespace: kube-system
  labels:
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: scripts.smartgrid.io
addressType: IPv4
endpoints:
- addresses: ["$ip"]
  conditions: {ready: true}
  nodeName: $NODE_NAME
ports:
- {name: dns, port: $DNS_PORT, protocol: UDP}
- {name: dns-tcp, port: $DNS_PORT, protocol: TCP}
YAML
}

# The product's images (and the stand-ins of its dependencies) from podman's storage into
# containerd; an image already loaded with the same ID is skipped.
load_images() {
  local refs ref id t0=$SECONDS n=0 stamps=$NODE/images
  mkdir -p "$stamps"
  refs=$(podman_ images --format '{{.Repository}}:{{.Tag}} {{.ID}}' 2>/dev/null |
         awk '$1 ~ /^(ghcr\.io\/smartgrid\/|localhost\/smartgrid-deps\/)/ && $1 !~ /:<none>$/' | sort -u)
  [[ -n $refs ]] || log "no product images in podman's storage (run scripts/images)"
  local present; present=$(ctr_ images ls -q 2>/dev/null)
  while read -r ref id; do
    [[ -n $ref ]] || continue
    local s; s=$stamps/$(echo "$ref" | tr '/:' '__')
    if [[ $(cat "$s" 2>/dev/null) == "$id" ]] && grep -qxF "$ref" <<<"$present"; then continue; fi
    podman_ save --format oci-archive "$ref" 2>/dev/null | ctr_ images import --base-name "${ref%:*}" - >/dev/null ||
      die "could not load $ref into containerd"
    grep -qxF "$ref" <<<"$(ctr_ images ls -q)" || die "$ref is not in containerd after the import"
    echo "$id" >"$s"; n=$((n + 1))
  done <<<"$refs"
  log "images in containerd: $n loaded in $((SECONDS - t0))s, $(wc -l <<<"$refs") in all"
}

load_pause_image() {
  if grep -qxF "$PAUSE_IMAGE" <<<"$(ctr_ images ls -q)" && [[ $(cat "$NODE/images/pause" 2>/dev/null) == "$K8S_VERSION" ]]; then
    return 0
  fi
  local tmp; tmp=$(mktemp -d "$NODE/pause.XXXX")
  cp "$BIN/pause" "$tmp/pause"
  tar -C "$tmp" -cf "$tmp/rootfs.tar" pause
  podman_ import --quiet --change 'ENTRYPOINT ["/pause"]' --change 'USER 65535:65535' "$tmp/rootfs.tar" "$PAUSE_IMAGE" >/dev/null
  podman_ save --format oci-archive "$PAUSE_IMAGE" 2>/dev/null | ctr_ images import --base-name "${PAUSE_IMAGE%:*}" - >/dev/null
  rm -rf "$tmp"
  # grep reads a here-string, not a pipe: under pipefail, `ctr ... | grep -q` fails when grep
  # exits on the first line and ctr, still writing the next, dies of SIGPIPE.
  grep -qxF "$PAUSE_IMAGE" <<<"$(ctr_ images ls -q)" || die "$PAUSE_IMAGE not in containerd after the import"
  mkdir -p "$NODE/images"; echo "$K8S_VERSION" >"$NODE/images/pause"
  log "pause image $PAUSE_IMAGE loaded"
}

node_running() { local p; for p in "${NODE_PROCS[@]}"; do is_running "$p" || return 1; done; }

node_up() {
  local ip=$1 t0=$SECONDS b p
  node_requirements
  # The bridge, the kubepods cgroups and the KUBE-* chains are the machine's: one node at a time.
  for p in $(pgrep -x kubelet || true); do
    [[ $p == "$(pid_of kubelet)" ]] && continue
    die "a kubelet of another state dir runs (pid $p, $(tr '\0' ' ' </proc/"$p"/cmdline | grep -o -- '--root-dir=[^ ]*')): stop it with its scripts/k8s down first"
  done
  for b in kubelet kube-proxy coredns pause; do
    [[ -x $BIN/$b ]] || { log "$b missing, running install --node first"; cmd_install; break; }
  done
  mkdir -p "$NODE"
  if ! is_running containerd; then node_cleanup_leftovers; fi
  sysctl_save_and_set
  write_containerd_config
  write_node_configs "$ip"
  start_proc containerd 0 containerd --config "$NODE/containerd/config.toml"
  wait_for 30 "containerd" containerd ctr --address "$CONTAINERD_SOCK" version
  load_pause_image
  load_images
  start_proc kubelet "$KUBELET_HEALTHZ_PORT" "$BIN/kubelet" --config="$NODE/kubelet.yaml" \
    --kubeconfig="$NODE/kubelet.kubeconfig" --root-dir="$NODE/kubelet" --cert-dir="$NODE/kubelet/pki" \
    --hostname-override="$NODE_NAME" --node-ip="$ip" --node-labels=type=real
  wait_for 60 "kubelet healthz" kubelet curl -fsS "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
  start_proc kube-proxy "$KUBE_PROXY_HEALTHZ_PORT" "$BIN/kube-proxy" --config="$NODE/kube-proxy.yaml"
  apply_dns_objects "$ip"
  start_proc coredns "$DNS_READY_PORT" "$BIN/coredns" -conf "$NODE/Corefile"
  wait_for 60 "CoreDNS ready" coredns curl -fsS "http://127.0.0.1:$DNS_READY_PORT/ready"
  wait_for 90 "node $NODE_NAME Ready" kubelet kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
  wait_for 30 "kube-proxy healthz" kube-proxy curl -fsS "http://127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT/healthz"
  log "node $NODE_NAME ($ip) Ready in $((SECONDS - t0))s; pods of a namespace made with '$0 node-namespace NAME' run on it"
}

# Kills what runs in the pods (they outlive containerd's shims otherwise), then the shims.
kill_pods() {
  local f pids
  for f in /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods; do  # cgroup v2, v1
    [[ -d $f ]] || continue
    pids=$(find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u || true)
    [[ -n $pids ]] && kill -KILL $pids 2>/dev/null || true
  done
  pids=$(pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" || true)
  [[ -n $pids ]] && kill -KILL $pids 2>/dev/null || true
  return 0
}

# What a killed node leaves on the machine: mounts under $NODE, network namespaces of pods,
# the bridge, iptables chains of the CNI bridge (its masquerade rules), kubelet and kube-proxy,
# the pods' cgroups, /var/log/containers links. Safe to run when nothing is left.
node_cleanup_leftovers() {
  kill_pods
  local m
  # Deepest first; -l: a mount still busy goes when its last user does.
  awk -v n="$NODE/" 'index($2, n) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
    umount -l "$(printf '%b' "$m")" 2>/dev/null || true
  done || true
  for m in /var/run/netns/cni-*; do
    [[ -e $m ]] || continue
    umount -l "$m" 2>/dev/null || true; rm -f "$m"
  done
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && ip link delete "$NODE_BRIDGE" 2>/dev/null || true
  local ipt table chain line
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    # The bridge plugin's masquerade rules carry the network's name.
    "$ipt" -t nat -S POSTROUTING 2>/dev/null | grep -F 'name: \"smartgrid\"' | while read -r line; do
      chain=${line##* -j }
      eval "$ipt -t nat ${line/-A /-D }" 2>/dev/null || true
      "$ipt" -t nat -F "$chain" 2>/dev/null; "$ipt" -t nat -X "$chain" 2>/dev/null || true
    done || true
    for table in filter nat mangle; do
      # Jumps from the built-in chains to KUBE-* chains, then the chains.
      "$ipt" -t "$table" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -vE '^-A KUBE-' | while read -r line; do
        eval "$ipt -t $table ${line/-A /-D }" 2>/dev/null || true
      done || true
      for chain in $("$ipt" -t "$table" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[^ ]*\).*/\1/p'); do
        "$ipt" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$ipt" -t "$table" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[^ ]*\).*/\1/p'); do
        "$ipt" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
  find /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods -depth -type d -exec rmdir {} + 2>/dev/null || true
  find /var/log/containers -maxdepth 1 -type l -lname "$NODE/*" -delete 2>/dev/null || true
  rm -rf "$NODE/cni/ipam"
  return 0
}

node_down() {
  stop_proc coredns & stop_proc kube-proxy & stop_proc kubelet &
  wait
  kill_pods
  stop_proc containerd
  node_cleanup_leftovers
  sysctl_restore
}

# A namespace whose pods run on the real node: they tolerate its taint and select it.
cmd_node_namespace() {
  local ns=${1:?usage: $0 node-namespace NAME}
  kc create namespace "$ns" --dry-run=client -o yaml | kc apply -f - >/dev/null
  kc annotate --overwrite namespace "$ns" \
    "scheduler.alpha.kubernetes.io/node-selector=type=real" \
    "scheduler.alpha.kubernetes.io/defaultTolerations=[{\"key\":\"$NODE_TAINT_KEY\",\"operator\":\"Exists\",\"effect\":\"NoSchedule\"}]" >/dev/null
  echo "$ns"
}
