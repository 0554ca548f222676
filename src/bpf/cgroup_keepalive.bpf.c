// The kernel half of `lifeline protect --cgroup`: a sock_ops program attached
// to a cgroup v2. When a TCP connection of a process in that cgroup becomes
// established (it connected, or a listener accepted it), it sets SO_KEEPALIVE,
// TCP_KEEPIDLE/KEEPINTVL/KEEPCNT and TCP_USER_TIMEOUT from the policy map, and
// records the socket (by cookie) in the touched map for `lifeline inspect`.
//
// Only the UAPI context (struct bpf_sock_ops) is read, so there are no kernel
// structure offsets to relocate: the object loads on any kernel with
// bpf_setsockopt for these options (TCP_USER_TIMEOUT there since Linux 6.0).
// The user-space half and the map layout's twin: src/bpf/cgroup_protection.cpp.
// The order matters: <bpf/bpf_helpers.h> needs the types <linux/bpf.h> brings.
// clang-format off
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
// clang-format on

// From <sys/socket.h> and <netinet/tcp.h>, which a BPF object cannot include.
#define LL_SOL_SOCKET 1
#define LL_SO_KEEPALIVE 9
#define LL_SOL_TCP 6
#define LL_TCP_KEEPIDLE 4
#define LL_TCP_KEEPINTVL 5
#define LL_TCP_KEEPCNT 6
#define LL_TCP_USER_TIMEOUT 18

// Set by user space; generation 0 means "not configured yet": touch nothing.
struct ll_policy {
    __u32 generation;
    __u32 idle_s;
    __u32 interval_s;
    __u32 count;
    __u32 keepalive;        // 0: leave SO_KEEPALIVE and its timings alone
    __u32 user_timeout_ms;  // 0: leave the socket's own
};

// Per touched socket. `failed` has bit i set when option i (in the order
// SO_KEEPALIVE, IDLE, INTVL, CNT, USER_TIMEOUT) was refused.
struct ll_touched {
    __u32 generation;
    __u32 failed;
    __u64 established_ns;  // bpf_ktime_get_ns(): CLOCK_MONOTONIC
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct ll_policy);
} ll_policy SEC(".maps");

// LRU: a busy cgroup's closed connections age out on their own.
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, struct ll_touched);
} ll_touched SEC(".maps");

static __always_inline __u32 set_int(struct bpf_sock_ops* skops, int level, int name, int value, int bit) {
    return bpf_setsockopt(skops, level, name, &value, sizeof(value)) == 0 ? 0 : (1u << bit);
}

SEC("sockops")
int lifeline_cgroup(struct bpf_sock_ops* skops) {
    if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) return 1;
    __u32 zero = 0;
    const struct ll_policy* p = bpf_map_lookup_elem(&ll_policy, &zero);
    if (p == 0 || p->generation == 0) return 1;
    struct ll_touched t = {.generation = p->generation, .failed = 0, .established_ns = bpf_ktime_get_ns()};
    if (p->keepalive != 0) {
        t.failed |= set_int(skops, LL_SOL_SOCKET, LL_SO_KEEPALIVE, 1, 0);
        t.failed |= set_int(skops, LL_SOL_TCP, LL_TCP_KEEPIDLE, (int)p->idle_s, 1);
        t.failed |= set_int(skops, LL_SOL_TCP, LL_TCP_KEEPINTVL, (int)p->interval_s, 2);
        t.failed |= set_int(skops, LL_SOL_TCP, LL_TCP_KEEPCNT, (int)p->count, 3);
    }
    if (p->user_timeout_ms != 0)
        t.failed |= set_int(skops, LL_SOL_TCP, LL_TCP_USER_TIMEOUT, (int)p->user_timeout_ms, 4);
    __u64 cookie = bpf_get_socket_cookie(skops);
    bpf_map_update_elem(&ll_touched, &cookie, &t, BPF_ANY);
    return 1;  // sock_ops programs return 1; the verdict is not used for these callbacks.
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
