// SIGINT/SIGTERM for the long-running commands (serve, connect): blocked in
// every thread from construction on, and handled by one thread that calls a
// stop function, because stop() is not async-signal-safe. Extra signals (such
// as connect's SIGUSR1 fault injection) can be handled the same way. Internal
// to src/cli.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <functional>
#include <thread>
#include <vector>

namespace lifeline::cli {

class StopSignals {
public:
    // Construct before any other thread starts: threads inherit the signal mask.
    // `extra` signals are blocked too (so they lose their default action) and
    // go to on_signal()'s `on_extra`; leave a signal out to keep its default.
    explicit StopSignals(const std::vector<int>& extra = {}) {
        sigemptyset(&signals_);
        sigaddset(&signals_, SIGINT);
        sigaddset(&signals_, SIGTERM);
        for (const int sig : extra) sigaddset(&signals_, sig);
        pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
    }
    ~StopSignals() { finish(); }
    StopSignals(const StopSignals&) = delete;
    StopSignals& operator=(const StopSignals&) = delete;

    // Calls `stop` (once) when SIGINT or SIGTERM arrives, and `on_extra` (on
    // the same thread, as often as they arrive until then) for the extra signals.
    void on_signal(std::function<void()> stop, std::function<void(int sig)> on_extra = {}) {
        thread_ = std::thread([this, stop = std::move(stop), on_extra = std::move(on_extra)] {
            while (true) {
                int sig = 0;
                if (sigwait(&signals_, &sig) != 0 || finished_.load()) return;
                if (sig == SIGINT || sig == SIGTERM) {
                    received_.store(true);
                    stop();
                    return;
                }
                if (on_extra) on_extra(sig);
            }
        });
    }
    // The work ended on its own (or after the signal): release the waiting thread.
    void finish() {
        if (finished_.exchange(true) || !thread_.joinable()) return;
        pthread_kill(thread_.native_handle(), SIGTERM);
        thread_.join();
    }
    bool received() const { return received_.load(); }

private:
    sigset_t signals_{};
    std::atomic<bool> finished_{false};
    std::atomic<bool> received_{false};
    std::thread thread_;
};

}  // namespace lifeline::cli
