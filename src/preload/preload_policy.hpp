// What liblifeline_preload does at each wrapped call (src/preload/interpose.cpp
// calls these with errno saved and its re-entry guard set). Never fails: what
// goes wrong is logged (LIFELINE_LOG) and the program's call goes on.
// Internal to src/preload.
#pragma once

namespace lifeline::preload {

enum class SocketEvent { connect, accept, listen };

// Reads the configuration and opens the log; false when there is nothing to
// apply (a configuration error, logged or printed to stderr once).
bool start();

// A TCP socket (IPv4 or IPv6; anything else is left alone) about to connect,
// just accepted from `listener`, or just listening: applies the policy unless
// the program chose its own timings (on this socket or its listener) and
// there is no override. The first event of a socket only.
void on_socket_event(int fd, SocketEvent event, int listener);

// The program is about to set `option` (a timing option, or SO_KEEPALIVE=0)
// on `fd`: from now on the socket is the program's. If the policy was
// applied, what the program had before is put back first.
void on_program_choice(int fd, const char* option);

// With LIFELINE_OVERRIDE: the program has just set `option`; the policy is
// put back over it if it was applied already (else it is applied at connect,
// accept or listen as usual).
void after_program_choice_overridden(int fd, const char* option);

// The program turned SO_KEEPALIVE on itself: if the policy is later undone
// (on_program_choice), keepalive stays on, as the program asked.
void on_program_keepalive_on(int fd);

bool override_program();

}  // namespace lifeline::preload
