# The local cluster's node: containerd, kubelet, kube-proxy, kube-scheduler
# and a cluster DNS, so pods of the chart run here as they do for users.
# Sourced by deploy/local/cluster; the facts behind every setting are in
# ../shared/LOCAL-NODE.md.
#
# The node changes the host: a bridge, iptables rules, sysctls, mounts,
# cgroups. Everything it changes is recorded under "$state/host" before the
# change, and node_down puts it back, also after a crash (cluster up runs
# down first, which finds the records the killed run left).

NODE_NAME=configmirror-node
NODE_BRIDGE=cm0
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/24
SERVICE_IP=10.96.0.1
CLUSTER_DOMAIN=cluster.local
PAUSE_IMAGE=configmirror.local/pause:3.10
STORAGE_CLASS=local-hostpath
LOCAL_VOLUMES=20
# One node per machine: the bridge and the guard rules have fixed names.
NODE_OWNER_FILE=/run/configmirror-node.owner
node_components=(containerd kubelet kube-proxy kube-scheduler coredns)

# Sysctls the kubelet, kube-proxy and the CNI bridge may set.
host_sysctls=(
  kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes
  net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.ipv4.conf.all.route_localnet
  net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
)

node_enabled() { [[ "${CONFIGMIRROR_NODE:-1}" != 0 ]]; }

containerd_address() { echo "$state/containerd/containerd.sock"; }

ctr_() { ctr --address "$(containerd_address)" -n k8s.io "$@"; }

# ---------------------------------------------------------------- host state

ensure_node_packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v gcc >/dev/null || missing+=(gcc libc6-dev)
  ((${#missing[@]} == 0)) && return 0
  echo "node: installing Debian's ${missing[*]}" >&2
  local sudo=""
  [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# Records what the node is about to change, once: a later up after a crash
# must restore the values from before the first run, not the kubelet's.
save_host_state() {
  local h="$state/host" k
  [[ -e "$h/saved" ]] && return 0
  mkdir -p "$h"
  iptables-save >"$h/iptables"
  ip6tables-save >"$h/ip6tables"
  : >"$h/sysctls"
  for k in "${host_sysctls[@]}"; do
    [[ -e "/proc/sys/${k//.//}" ]] && printf '%s=%s\n' "$k" "$(sysctl -n "$k")" >>"$h/sysctls"
  done
  echo "$state" >"$NODE_OWNER_FILE"
  touch "$h/saved"
}

# iptables-restore replaces only the tables its input names, and a host
# without rules saves no table at all: name every table, empty when the
# snapshot had none of it, so the kubelet's, kube-proxy's and our own rules
# all go.
complete_tables() { # snapshot-file
  local t chains
  cat "$1"
  for t in filter nat mangle raw security; do
    grep -qx "\*$t" "$1" && continue
    case "$t" in
      filter | security) chains="INPUT FORWARD OUTPUT" ;;
      nat) chains="PREROUTING INPUT OUTPUT POSTROUTING" ;;
      mangle) chains="PREROUTING INPUT FORWARD OUTPUT POSTROUTING" ;;
      raw) chains="PREROUTING OUTPUT" ;;
    esac
    echo "*$t"
    for c in $chains; do echo ":$c ACCEPT [0:0]"; done
    echo COMMIT
  done
}

restore_iptables() { # snapshot-file iptables-restore
  local tmp
  tmp="$(mktemp)"
  complete_tables "$1" >"$tmp"
  "$2" <"$tmp" || echo "node: $2 failed" >&2
  rm -f "$tmp"
}

restore_host_state() {
  local h="$state/host"
  [[ -e "$h/saved" ]] || return 0
  restore_iptables "$h/iptables" iptables-restore
  restore_iptables "$h/ip6tables" ip6tables-restore
  while IFS= read -r kv; do sysctl -q -w "$kv" >/dev/null || echo "node: restoring $kv failed" >&2; done <"$h/sysctls"
  rm -rf "$h"
  [[ "$(cat "$NODE_OWNER_FILE" 2>/dev/null)" == "$state" ]] && rm -f "$NODE_OWNER_FILE"
}

refuse_second_node() {
  local owner
  owner="$(cat "$NODE_OWNER_FILE" 2>/dev/null || true)"
  if [[ -n "$owner" && "$owner" != "$state" && -e "$owner/host/saved" ]]; then
    die "a node already runs for the cluster in $owner; run CONFIGMIRROR_CLUSTER_DIR=$owner deploy/local/cluster down first, or set CONFIGMIRROR_NODE=0"
  fi
}

# The pods' network: a bridge of our own, and the guard rules that keep pod
# traffic inside the pod and Service ranges (nothing leaves the machine).
start_network() {
  sysctl -q -w net.ipv4.ip_forward=1
  ip link add "$NODE_BRIDGE" type bridge
  # The pods have no IPv6; none of theirs should go anywhere.
  sysctl -q -w "net.ipv6.conf.$NODE_BRIDGE.disable_ipv6=1" || true
  ip addr add "$NODE_IP/24" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up

  iptables -t raw -N CONFIGMIRROR-GUARD
  iptables -t raw -A CONFIGMIRROR-GUARD -d "$POD_CIDR" -j RETURN
  iptables -t raw -A CONFIGMIRROR-GUARD -d "$SERVICE_CIDR" -j RETURN
  iptables -t raw -A CONFIGMIRROR-GUARD -j DROP
  iptables -t raw -I PREROUTING -i "$NODE_BRIDGE" -j CONFIGMIRROR-GUARD
  iptables -t mangle -I FORWARD -s "$POD_CIDR" ! -o "$NODE_BRIDGE" -j DROP
  ip6tables -t raw -I PREROUTING -i "$NODE_BRIDGE" -j DROP
}

# ---------------------------------------------------------------- pki

sign_cert() { # name subject san-or-empty usage(serverAuth|clientAuth)
  local name="$1" subject="$2" san="$3" usage="$4"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subject" \
    -keyout "$name.key" -out "$name.csr" 2>/dev/null
  {
    echo "extendedKeyUsage=$usage"
    [[ -n "$san" ]] && echo "subjectAltName=$san"
  } >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

make_node_pki() {
  (
    cd "$state/pki"
    sign_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "" clientAuth
    sign_cert kubelet-serving "/CN=$NODE_NAME" "IP:$NODE_IP,DNS:$NODE_NAME" serverAuth
    sign_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "" clientAuth
    sign_cert kube-scheduler "/CN=system:kube-scheduler" "" clientAuth
    sign_cert kube-proxy "/CN=system:kube-proxy" "" clientAuth
  )
}

cert_kubeconfig() { # file user-cert-basename
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster: {server: "https://$NODE_IP:$API_PORT", certificate-authority: "$state/pki/ca.crt"}
users:
  - name: $2
    user: {client-certificate: "$state/pki/$2.crt", client-key: "$state/pki/$2.key"}
contexts:
  - name: local
    context: {cluster: local, user: $2}
current-context: local
EOF
}

# ---------------------------------------------------------------- components

write_containerd_config() {
  local d="$state/containerd"
  mkdir -p "$d" "$state/cni/net.d" "$state/cni/ipam"
  cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
# This VM has no CAP_SYS_RESOURCE: nothing may lower an OOM score.
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
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
        # Under the state directory, so a later down finds containers a
        # crashed run left even when containerd is gone.
        Root = "$d/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$state/cni/net.d"
EOF
  cat >"$state/cni/net.d/10-configmirror.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "configmirror",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$state/cni/ipam"
      }
    }
  ]
}
EOF
}

write_kubelet_config() { # kubelet-port healthz-port
  mkdir -p "$state/kubelet" "$state/pod-logs"
  cat >"$state/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $1
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $2
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$state/pki/ca.crt"}
authorization: {mode: AlwaysAllow}
tlsCertFile: "$state/pki/kubelet-serving.crt"
tlsPrivateKeyFile: "$state/pki/kubelet-serving.key"
containerRuntimeEndpoint: "unix://$(containerd_address)"
podLogsDir: "$state/pod-logs"
# cgroup v1 (hybrid) on this VM, no swap accounting, no CAP_SYS_RESOURCE.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
clusterDNS: [$NODE_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: ""
# A small disk must not evict the test pods.
evictionHard: {memory.available: "100Mi", nodefs.available: "2%", nodefs.inodesFree: "2%", imagefs.available: "2%"}
imageGCHighThresholdPercent: 98
imageGCLowThresholdPercent: 95
serializeImagePulls: false
maxPods: 110
EOF
}

write_kube_proxy_config() { # metrics-port healthz-port
  cat >"$state/kube-proxy-config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: "$state/kube-proxy.kubeconfig"}
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:$2
metricsBindAddress: 127.0.0.1:$1
nodePortAddresses: ["$NODE_IP/32"]
oomScoreAdj: 0
# Leave the host's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
EOF
}

write_corefile() { # health-port
  cat >"$state/Corefile" <<EOF
$CLUSTER_DOMAIN:53 in-addr.arpa:53 ip6.arpa:53 {
  bind $NODE_IP
  errors
  health 127.0.0.1:$1
  kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
    kubeconfig $state/kubeconfig
    pods insecure
  }
  cache 30
}
EOF
}

containerd_ready() { ctr --address "$(containerd_address)" version; }

node_ready() {
  "$TOOLS_DIR/kubectl" --kubeconfig "$state/kubeconfig" get node "$NODE_NAME" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' | grep -qx True
}

dns_ready() { curl -fsS --max-time 1 "http://127.0.0.1:$DNS_HEALTH_PORT/health"; }

# Static hostPath volumes and a default StorageClass for them: there is no
# provisioner, and the chart's PostgreSQL asks for a PVC. World-writable
# directories, so any non-root uid a chart picks can write its data.
make_local_volumes() {
  local i dir
  {
    cat <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $STORAGE_CLASS
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
EOF
    for ((i = 0; i < LOCAL_VOLUMES; i++)); do
      dir="$state/volumes/pv-$i"
      mkdir -p "$dir" && chmod 0777 "$dir"
      cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: local-pv-$i, labels: {configmirror.local/volume: "true"}}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: $STORAGE_CLASS
  hostPath: {path: "$dir", type: Directory}
EOF
    done
  } | "$TOOLS_DIR/kubectl" --kubeconfig "$state/kubeconfig" apply -f - >/dev/null
}

# Starts the node once the API server and the controller manager run.
node_up() {
  local kube_bin="$1"
  cert_kubeconfig "$state/kubelet.kubeconfig" kubelet
  cert_kubeconfig "$state/kube-proxy.kubeconfig" kube-proxy
  cert_kubeconfig "$state/kube-scheduler.kubeconfig" kube-scheduler

  echo "node: starting containerd" >&2
  write_containerd_config
  start_bg containerd "$(command -v containerd)" --config "$state/containerd/config.toml"
  wait_for containerd 30 containerd_ready
  local pause
  pause="$("$here/pause-image" "$cache_root")"
  ctr_ images import "$pause" >/dev/null
  ctr_ images label "$PAUSE_IMAGE" io.cri-containerd.pinned=pinned >/dev/null

  local ports
  read -r KUBELET_PORT KUBELET_HEALTH_PORT PROXY_METRICS_PORT PROXY_HEALTH_PORT SCHED_PORT DNS_HEALTH_PORT < <(free_ports 6)
  ports="KUBELET_PORT=$KUBELET_PORT KUBELET_HEALTH_PORT=$KUBELET_HEALTH_PORT SCHED_PORT=$SCHED_PORT DNS_HEALTH_PORT=$DNS_HEALTH_PORT"
  printf '%s\n' $ports >>"$state/ports.env"

  echo "node: starting kubelet, kube-proxy, kube-scheduler and DNS" >&2
  write_kubelet_config "$KUBELET_PORT" "$KUBELET_HEALTH_PORT"
  start_bg kubelet "$kube_bin/kubelet" --config "$state/kubelet-config.yaml" \
    --kubeconfig "$state/kubelet.kubeconfig" --root-dir "$state/kubelet" --cert-dir "$state/kubelet/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v 1
  write_kube_proxy_config "$PROXY_METRICS_PORT" "$PROXY_HEALTH_PORT"
  start_bg kube-proxy "$kube_bin/kube-proxy" --config "$state/kube-proxy-config.yaml" --v 1
  start_bg kube-scheduler "$kube_bin/kube-scheduler" --kubeconfig "$state/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$state/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$state/kube-scheduler.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port "$SCHED_PORT"
  write_corefile "$DNS_HEALTH_PORT"
  start_bg coredns "$("$here/build-coredns")/coredns" -conf "$state/Corefile"

  wait_for "the node" 60 node_ready
  wait_for "cluster DNS" 30 dns_ready
  make_local_volumes
}

# ---------------------------------------------------------------- teardown

# Everything mounted under the state directory (pod volumes, container root
# filesystems), deepest first.
unmount_state() {
  local m
  awk -v s="$state/" '{ if (index($5, s) == 1) print $5 }' /proc/self/mountinfo | sort -r |
    while IFS= read -r m; do umount -l "$m" 2>/dev/null || true; done
}

# Stops the node and undoes what it did to the host. Safe to run when
# nothing (or only part) of it runs.
node_down() {
  local c id pid
  for c in coredns kube-scheduler kube-proxy kubelet; do stop_pid "$c"; done
  # Containers, through runc directly: it works whether or not containerd
  # still runs, and containerd's shims then exit by themselves.
  local runc_root="$state/containerd/runc/k8s.io"
  if [[ -d "$runc_root" ]]; then
    for id in $(runc --root "$runc_root" list -q 2>/dev/null); do
      runc --root "$runc_root" kill "$id" KILL 2>/dev/null || true
      runc --root "$runc_root" delete --force "$id" 2>/dev/null || true
    done
  fi
  stop_pid containerd
  # Shims of a crashed containerd: they carry its socket in their arguments.
  for pid in $(pgrep -f -- "-address $(containerd_address)" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  # The pods' network namespaces, now empty.
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '/^cni-/ {print $1}'); do
    [[ -z "$(ip netns pids "$ns" 2>/dev/null)" ]] && ip netns delete "$ns" 2>/dev/null || true
  done
  unmount_state
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    for c in $(ip -o link show master "$NODE_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
      ip link delete "$c" 2>/dev/null || true
    done
    ip link delete "$NODE_BRIDGE"
  fi
  restore_host_state
  # What the kubelet leaves behind outside its root directory.
  local cg
  for cg in /sys/fs/cgroup/*/kubepods; do
    [[ -d "$cg" ]] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  find /var/log/containers -maxdepth 1 -type l -lname "$state/*" -delete 2>/dev/null || true
}
