// `lifeline protect --cgroup`: a BPF sock_ops program (cgroup_keepalive.bpf.c)
// attached to a cgroup v2 gives every TCP connection that becomes established
// there, connected or accepted, the keepalive policy, through bpf_setsockopt:
// programs started later and static binaries included, nothing runs inside
// them. The policy lives in a BPF map, so protecting the cgroup again changes
// it live for connections established from then on (earlier ones keep theirs).
//
// Nothing is pinned: the kernel keeps an attached program (and its maps) alive
// for as long as it is attached, and the program is found again by its name
// (lifeline_cgroup) among the cgroup's sock_ops programs. No BPF filesystem is
// needed.
//
// Errors: Errc::unsupported when lifeline was built without BPF (no clang,
// bpftool or libbpf-dev at build time) or the kernel lacks cgroup BPF;
// Errc::system with the errno otherwise (EPERM: needs CAP_BPF and
// CAP_NET_ADMIN, i.e. root). Threads: any; no state is shared between calls.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lifeline/keepalive.hpp"
#include "lifeline/result.hpp"
#include "lifeline/time.hpp"

namespace lifeline::bpf {

// False when this build has no BPF part; then every call below returns
// Errc::unsupported saying why.
bool built_with_bpf();

struct CgroupProtection {
    std::string cgroup;            // the path, as given
    std::uint32_t program_id = 0;  // the kernel's id (bpftool prog show id N)
    std::uint32_t generation = 0;  // bumped by each protect of this cgroup
    bool updated = false;          // true: an attached program's policy was replaced
};

// Attaches the program to the cgroup v2 directory `cgroup` with `policy`, or,
// when one is attached already, replaces its policy. The attachment outlives
// this process.
Result<CgroupProtection> protect_cgroup(const std::string& cgroup, const KeepalivePolicy& policy);

// Detaches lifeline's program from `cgroup`. Returns false when none was attached.
Result<bool> unprotect_cgroup(const std::string& cgroup);

// The policy a cgroup's attached program applies; Errc::not_open when none is attached.
Result<KeepalivePolicy> cgroup_policy(const std::string& cgroup);

// A connection the program set the policy on.
struct TouchedSocket {
    std::uint64_t cookie = 0;          // SO_COOKIE / inet_diag idiag_cookie
    std::uint32_t program_id = 0;      // which attachment
    std::uint32_t generation = 0;      // the policy generation it got
    std::vector<std::string> refused;  // options bpf_setsockopt refused ("TCP_USER_TIMEOUT")
    Duration age;                      // since it became established
};

// Every socket any attached lifeline program touched (up to 65536 per
// attachment, least recently touched first to go), for `lifeline inspect`.
// Without any attachment: an empty list. Needs root (CAP_SYS_ADMIN) to walk
// the kernel's BPF programs.
Result<std::vector<TouchedSocket>> touched_sockets();

}  // namespace lifeline::bpf
