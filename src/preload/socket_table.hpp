// What liblifeline_preload knows about each descriptor of the program: whether
// it applied the policy, what was in force before (to undo it when the program
// makes its own timing choice), and whether the program chose. Internal to
// src/preload.
//
// Threads: any; callers hold one process-wide lock (socket options are
// set rarely: at connect, accept, listen and the program's own setsockopt).
// A descriptor is recognised by its socket inode too, so a closed and reused
// number starts afresh without wrapping close().
#pragma once

#include <cstdint>

#include "lifeline/sys/socket_options.hpp"

namespace lifeline::preload {

struct SocketState {
    std::uint64_t inode = 0;       // 0: nothing known about this descriptor.
    bool applied = false;          // The policy is (or was) in force from us.
    bool before_known = false;     // `before` holds what the program had.
    bool seen = false;             // connect/accept/listen handled (logged) once.
    bool override_logged = false;  // With LIFELINE_OVERRIDE: the first re-apply was logged.
    const char* chose = nullptr;   // The option the program set itself (static string), or null.
    sys::EffectiveKeepalive before;
};

// Descriptors up to this are tracked; beyond, the policy is still applied but
// a later choice by the program cannot undo it (logged).
inline constexpr int kTrackedDescriptors = 1 << 16;

// Holds the process-wide lock of the table for its scope.
class TableLock {
public:
    TableLock();
    ~TableLock();
    TableLock(const TableLock&) = delete;
    TableLock& operator=(const TableLock&) = delete;
};

// The state of `fd`, reset first if `fd` now names another socket (inode)
// than last time; null for an untracked descriptor or one that is not a
// socket. Only with a TableLock held.
SocketState* state_slot(int fd);

// After fork() the child has the one thread that forked: the lock is released
// in it (pthread_atfork), so a fork while another thread held it cannot hang.
void install_fork_handlers();

}  // namespace lifeline::preload
