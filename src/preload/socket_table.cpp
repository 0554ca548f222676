#include "preload/socket_table.hpp"

#include <pthread.h>
#include <sys/stat.h>

#include <mutex>

namespace lifeline::preload {

namespace {
// Constant-initialised (no constructor runs at load time); about 4 MiB of
// zero pages, of which only the ones holding used descriptors are touched.
constinit std::mutex table_lock;
constinit SocketState table[kTrackedDescriptors];

void lock_before_fork() { table_lock.lock(); }
void unlock_after_fork() { table_lock.unlock(); }
}  // namespace

TableLock::TableLock() { table_lock.lock(); }
TableLock::~TableLock() { table_lock.unlock(); }

SocketState* state_slot(int fd) {
    if (fd < 0 || fd >= kTrackedDescriptors) return nullptr;
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return nullptr;
    SocketState& s = table[fd];
    if (s.inode != st.st_ino) {
        s = SocketState{};
        s.inode = st.st_ino;
    }
    return &s;
}

void install_fork_handlers() { ::pthread_atfork(lock_before_fork, unlock_after_fork, unlock_after_fork); }

}  // namespace lifeline::preload
