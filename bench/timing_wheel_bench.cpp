// Benchmark of the timing wheel against the two timer queues people usually
// write instead: a std::priority_queue with lazy cancellation and a
// std::multimap keyed by deadline. Run it through bench/run.sh (`make bench`);
// docs/BENCHMARKS.md explains the workloads and records the results.
//
// This is a benchmark, not a test: it asserts nothing about time. It does
// check that every queue fired or kept the timers it should have, and marks
// the row as an error if not, so a broken queue cannot post a fast number.
//
// Every implementation runs the same templated bodies over the same
// pre-computed random data (fixed seed), so the random number generator is not
// measured and every run sees the same operations. Memory for the timers is
// allocated before any timed region.
//
// Workloads, each at N = 1k, 100k and 1M timers with deadlines spread
// uniformly over 30 s (heartbeat timeouts on a 10 ms tick):
//   rearm     steady state with N armed, time standing still: schedule() an
//             armed random timer to a new deadline (the heartbeat re-arm). One
//             item = one re-arm. Also run on a "floor" that only writes the
//             timer's own record.
//   rearm_ab  the wheel and the heap re-arming in alternating slices, for a
//             ratio that a noisy neighbour cannot skew.
//   cancel_schedule  as rearm, but cancel() first, then schedule(): the
//             wheel must unlink the node. Wheel and heap only.
//   churn     as rearm, but time moves: one tick every N/100 re-arms, each
//             advance() firing what is due and the callback re-arming it, so
//             the costs a queue defers (the wheel's lazy re-arms, the heap's
//             stale entries) are paid inside the measurement. One item = one
//             re-arm or one fire. Wheel and heap only.
//   heartbeat as churn, but each timer has a fixed timeout (uniform over 30 s)
//             and a re-arm sets now + that timeout: always later.
//   cancel    cancel all N armed timers in random order. One item = one cancel.
//   expire    drain N armed timers the way a runtime does: sleep until
//             next_expiry(), advance() to it, repeat. One item = one timer fired.
// `cancel` and `expire` time only their phase (manual timing); arming the N
// timers before it is measured too and reported as a counter.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <numeric>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "lifeline/engine/timing_wheel.hpp"
#include "lifeline/time.hpp"

namespace lifeline {
namespace {

constexpr Duration kTick = Duration::milliseconds(10);
constexpr Duration kSpread = Duration::seconds(30);
// The timeline starts well after the epoch, as a monotonic clock's would.
constexpr Instant kStart = Instant::from_ns(1'000'000'000'000);
constexpr std::uint64_t kSeed = 0x6c6966656c696e65;  // "lifeline"
// Re-arm operations are drawn from a ring of this many pre-computed ones.
constexpr std::size_t kRearmOps = std::size_t{1} << 20;

// ---------------------------------------------------------------------------
// The three queues, behind one interface (and a floor, below). Timers are named by a dense id in
// [0, n); each queue keeps its per-timer state in a preallocated array indexed
// by id, as a connection table would, so no queue allocates per timer except
// std::multimap, whose nodes are the point of using it.
//
//   void schedule(std::uint32_t id, Instant deadline);  // arms or re-arms
//   void cancel(std::uint32_t id);                       // no-op if unarmed
//   Instant next_expiry();            // Instant::never() when empty
//   std::size_t advance(Instant now, F on_expired);  // on_expired(id)
//   std::size_t size() const;         // armed timers
// ---------------------------------------------------------------------------

// lifeline's wheel with caller-owned nodes: one TimerNode per timer.
class WheelQueue {
public:
    static constexpr const char* kName = "wheel";

    WheelQueue(std::size_t n, Instant start)
        : nodes_(std::make_unique<TimerNode[]>(n)),
          wheel_(std::make_unique<TimingWheel>(start, TimingWheelConfig{kTick})) {}

    void schedule(std::uint32_t id, Instant deadline) { wheel_->schedule(nodes_[id], deadline); }
    void cancel(std::uint32_t id) { wheel_->cancel(nodes_[id]); }
    Instant next_expiry() const { return wheel_->next_expiry(); }
    template <class F>
    std::size_t advance(Instant now, F&& on_expired) {
        return wheel_->advance(now,
                               [&](TimerNode& node) { on_expired(static_cast<std::uint32_t>(&node - nodes_.get())); });
    }
    std::size_t size() const { return wheel_->size(); }

private:
    // Declared before the wheel so that the wheel is destroyed first and
    // disarms every node still linked before the nodes go away.
    std::unique_ptr<TimerNode[]> nodes_;
    std::unique_ptr<TimingWheel> wheel_;
};

// A min-heap of {deadline, id, generation} with lazy cancellation, written the
// way it usually is: cancelling or re-arming a timer bumps its generation and
// leaves the old entry in the heap; entries whose generation is stale are
// skipped when they reach the top. Left alone, re-arming makes the heap grow
// without bound, so when the stale entries outnumber the live ones the heap is
// compacted (stale entries dropped, heap rebuilt in O(n)). That bounds the heap
// at 2 * live + 1 entries and makes compaction O(1) amortised per operation.
class HeapQueue {
public:
    static constexpr const char* kName = "heap";

    HeapQueue(std::size_t n, Instant /*start*/) : timers_(n) { heap_.reserve(2 * n + 2); }

    void schedule(std::uint32_t id, Instant deadline) {
        Timer& timer = timers_[id];
        ++timer.generation;  // Any entry already in the heap for this timer is now stale.
        if (!timer.armed) {
            timer.armed = true;
            ++live_;
        }
        heap_.push({deadline, id, timer.generation});
        compact_if_mostly_stale();
    }

    void cancel(std::uint32_t id) {
        Timer& timer = timers_[id];
        if (!timer.armed) return;
        timer.armed = false;
        --live_;
        compact_if_mostly_stale();
    }

    Instant next_expiry() {
        drop_stale_top();
        return heap_.empty() ? Instant::never() : heap_.top().deadline;
    }

    template <class F>
    std::size_t advance(Instant now, F&& on_expired) {
        std::size_t fired = 0;
        for (drop_stale_top(); !heap_.empty() && heap_.top().deadline <= now; drop_stale_top()) {
            const std::uint32_t id = heap_.top().id;
            heap_.pop();
            timers_[id].armed = false;
            --live_;
            ++fired;
            on_expired(id);
        }
        return fired;
    }

    std::size_t size() const { return live_; }

private:
    struct Entry {
        Instant deadline;
        std::uint32_t id;
        std::uint32_t generation;
    };
    struct Later {
        bool operator()(const Entry& a, const Entry& b) const { return a.deadline > b.deadline; }
    };
    // std::priority_queue keeps its container in the protected member `c`
    // precisely so that a derived class can reach it; compaction needs to.
    struct Heap : std::priority_queue<Entry, std::vector<Entry>, Later> {
        void reserve(std::size_t n) { c.reserve(n); }
        template <class Pred>
        void compact(Pred is_stale) {
            std::erase_if(c, is_stale);
            std::make_heap(c.begin(), c.end(), comp);
        }
    };
    struct Timer {
        std::uint32_t generation = 0;
        bool armed = false;
    };

    bool stale(const Entry& e) const {
        const Timer& timer = timers_[e.id];
        return !timer.armed || timer.generation != e.generation;
    }
    void drop_stale_top() {
        while (!heap_.empty() && stale(heap_.top())) heap_.pop();
    }
    void compact_if_mostly_stale() {
        if (heap_.size() - live_ > live_) {
            heap_.compact([this](const Entry& e) { return stale(e); });
        }
    }

    std::vector<Timer> timers_;
    Heap heap_;
    std::size_t live_ = 0;  // Armed timers: exactly one live entry each.
};

// std::multimap<deadline, id>, each timer keeping the iterator of its entry so
// that cancel is an erase by iterator. One node allocation per schedule.
class MultimapQueue {
public:
    static constexpr const char* kName = "multimap";

    MultimapQueue(std::size_t n, Instant /*start*/) : handles_(n, map_.end()) {}

    void schedule(std::uint32_t id, Instant deadline) {
        cancel(id);
        handles_[id] = map_.emplace(deadline, id);
    }
    void cancel(std::uint32_t id) {
        auto& handle = handles_[id];
        if (handle == map_.end()) return;
        map_.erase(handle);
        handle = map_.end();
    }
    Instant next_expiry() const { return map_.empty() ? Instant::never() : map_.begin()->first; }
    template <class F>
    std::size_t advance(Instant now, F&& on_expired) {
        std::size_t fired = 0;
        while (!map_.empty() && map_.begin()->first <= now) {
            const std::uint32_t id = map_.begin()->second;
            map_.erase(map_.begin());
            handles_[id] = map_.end();
            ++fired;
            on_expired(id);
        }
        return fired;
    }
    std::size_t size() const { return map_.size(); }

private:
    using Map = std::multimap<Instant, std::uint32_t>;
    Map map_;  // Before handles_: they are initialised to map_.end().
    std::vector<Map::iterator> handles_;
};

// Not a timer queue: the floor under the re-arm figures. Re-arming any timer
// must at least write that timer's own state, and at 1M timers that state is
// scattered over more memory than the caches hold. This writes the deadline
// into a record as large as a TimerNode and does nothing else, so the gap
// between a queue and the floor is what the queue's own structure costs.
class FloorQueue {
public:
    static constexpr const char* kName = "floor";

    FloorQueue(std::size_t n, Instant /*start*/) : records_(n) {}

    void schedule(std::uint32_t id, Instant deadline) {
        Record& r = records_[id];
        size_ += r.armed ? 0 : 1;
        r.armed = true;
        r.deadline = deadline;
    }
    void cancel(std::uint32_t id) {
        Record& r = records_[id];
        size_ -= r.armed ? 1 : 0;
        r.armed = false;
    }
    std::size_t size() const { return size_; }

private:
    struct Record {
        Instant deadline;
        bool armed = false;
        char padding[sizeof(TimerNode) - sizeof(Instant) - sizeof(bool)];
    };
    static_assert(sizeof(Record) == sizeof(TimerNode));
    std::vector<Record> records_;
    std::size_t size_ = 0;
};

// ---------------------------------------------------------------------------
// Pre-computed random data, so the timed loops measure the queues, not the RNG.
// ---------------------------------------------------------------------------

struct RearmOp {
    std::int64_t offset_ns;  // New deadline, relative to the start of the timeline.
    std::uint32_t id;
};

struct Workload {
    // Timers are armed in a random order (arm_order[i] gets arm_offset_ns[i]),
    // as connections arm them, so no queue gets address-ordered lists for free.
    std::vector<std::uint32_t> arm_order;
    std::vector<std::int64_t> arm_offset_ns;
    std::vector<std::uint32_t> cancel_order;  // Another random permutation.
    std::vector<RearmOp> rearm_ops;           // kRearmOps of them.
};

const Workload& workload_for(std::size_t n) {
    static std::map<std::size_t, std::unique_ptr<Workload>> cache;
    auto& slot = cache[n];
    if (slot) return *slot;
    slot = std::make_unique<Workload>();
    Workload& w = *slot;
    std::mt19937_64 rng(kSeed ^ n);
    // Deadlines in [1 ms, 30 s]: at least one tick-fraction ahead, so none is "due now".
    std::uniform_int_distribution<std::int64_t> offset(Duration::milliseconds(1).ns(), kSpread.ns());
    std::uniform_int_distribution<std::uint32_t> id(0, static_cast<std::uint32_t>(n - 1));

    w.arm_order.resize(n);
    std::iota(w.arm_order.begin(), w.arm_order.end(), 0u);
    std::shuffle(w.arm_order.begin(), w.arm_order.end(), rng);
    w.arm_offset_ns.resize(n);
    for (auto& o : w.arm_offset_ns) o = offset(rng);
    w.cancel_order = w.arm_order;
    std::shuffle(w.cancel_order.begin(), w.cancel_order.end(), rng);
    w.rearm_ops.resize(kRearmOps);
    for (auto& op : w.rearm_ops) op = {offset(rng), id(rng)};
    return w;
}

// ---------------------------------------------------------------------------
// Clocks. Wall time on this shared 2-core VM includes the time the thread sat
// preempted by other jobs (30-50% of it under load), so timing uses the
// thread's CPU clock, as Google Benchmark itself does by default. A read of
// that clock is a system call costing ~2 us here, though, which would swamp
// the 2-30 us phases at N = 1k; below kCpuClockMinTimers a phase is timed with
// steady_clock instead (tens of ns per read) and the median phase is
// reported: a phase that short is rarely preempted, and the median discards
// the few that were.
// ---------------------------------------------------------------------------

constexpr std::size_t kCpuClockMinTimers = 100'000;

std::int64_t thread_cpu_ns() {
    timespec ts{};
    // Cannot fail for the calling thread's own clock; a benchmark without its clock is useless.
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) std::abort();
    return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::int64_t steady_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

class PhaseClock {
public:
    explicit PhaseClock(std::size_t n) : cpu_(n >= kCpuClockMinTimers) {}
    std::int64_t now_ns() const { return cpu_ ? thread_cpu_ns() : steady_ns(); }

private:
    bool cpu_;
};

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const std::size_t mid = v.size() / 2;
    return v.size() % 2 == 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

// Arms every timer at base + its offset and returns how long that took, in seconds.
template <class Queue>
double arm_all(Queue& q, const Workload& w, Instant base, const PhaseClock& clock) {
    const std::int64_t begin = clock.now_ns();
    for (std::size_t i = 0; i < w.arm_order.size(); ++i) {
        q.schedule(w.arm_order[i], base + Duration::nanoseconds(w.arm_offset_ns[i]));
    }
    return static_cast<double>(clock.now_ns() - begin) * 1e-9;
}

// ---------------------------------------------------------------------------
// Benchmark bodies. state.range(0) is N. Counters are seconds per item (the
// wheel/heap ratio aside), which the console prints with an SI prefix ("12.3n"
// is 12.3 ns):
//   per_op           the time per item of the benchmark's workload
//   schedule_per_op  (cancel, expire) arming N timers into an empty queue
// ---------------------------------------------------------------------------

// The re-arm benchmark's queue, armed once per process and then kept: Google
// Benchmark calls a body once per repetition, and arming 1M multimap entries
// each time would dominate the run. Re-arming keeps N timers armed, so a later
// call finds the same steady state.
template <class Queue>
struct SteadyState {
    std::unique_ptr<Queue> queue;
    std::size_t next_op = 0;
};

// One per workload (kCancelFirst): a re-arm that does not unlink leaves the
// wheel's nodes in other slots than one that does, and neither workload
// should measure the state the other left.
template <class Queue, bool kCancelFirst = false>
SteadyState<Queue>& steady_state(std::size_t n) {
    static std::map<std::size_t, SteadyState<Queue>> states;
    SteadyState<Queue>& s = states[n];
    if (!s.queue) {
        s.queue = std::make_unique<Queue>(n, kStart);
        arm_all(*s.queue, workload_for(n), kStart, PhaseClock(0));
    }
    return s;
}

// The heap compacts once every N re-arms, so a measurement of it must span a
// whole number of N re-arms or it over- or under-counts compactions (they are
// about half of its cost at 1M). Every N divides this.
constexpr std::int64_t kRearmIterations = 4'000'000;

// Timed by Google Benchmark itself (CPU time), one iteration per re-arm. A
// re-arm is one schedule() of an armed timer, as the runtime does it; with
// kCancelFirst the timer is cancelled first (the cancel_schedule workload).
template <class Queue, bool kCancelFirst = false>
void bm_rearm(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const Workload& w = workload_for(n);
    SteadyState<Queue>& steady = steady_state<Queue, kCancelFirst>(n);
    Queue& q = *steady.queue;
    const RearmOp* ops = w.rearm_ops.data();
    std::size_t next = steady.next_op;
    for (auto _ : state) {
        const RearmOp& op = ops[next];
        next = (next + 1) & (kRearmOps - 1);
        if constexpr (kCancelFirst) q.cancel(op.id);
        q.schedule(op.id, kStart + Duration::nanoseconds(op.offset_ns));
    }
    steady.next_op = next;
    if (q.size() != n) state.SkipWithError("re-arming changed the number of armed timers");
    state.SetItemsProcessed(state.iterations());
    state.counters["per_op"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                  benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// Times `count` re-arms on a steady-state queue (thread CPU time, in seconds).
template <class Queue>
double rearm_slice(SteadyState<Queue>& steady, const Workload& w, std::size_t count) {
    Queue& q = *steady.queue;
    const RearmOp* ops = w.rearm_ops.data();
    std::size_t next = steady.next_op;
    const std::int64_t begin = thread_cpu_ns();
    for (std::size_t i = 0; i < count; ++i) {
        const RearmOp& op = ops[next];
        next = (next + 1) & (kRearmOps - 1);
        q.schedule(op.id, kStart + Duration::nanoseconds(op.offset_ns));
    }
    const std::int64_t end = thread_cpu_ns();
    steady.next_op = next;
    return static_cast<double>(end - begin) * 1e-9;
}

// The re-arm ratio made robust to a noisy machine: the wheel and the heap
// re-arm in alternating slices of kRearmSlice operations (0.5 to 5 ms each,
// the order swapped every iteration), so a burst of load from a neighbour
// hits both sides alike. Each repetition runs kRearmIterations re-arms per
// side, a whole number of heap compaction periods. Counters: `wheel` and
// `heap` (seconds per re-arm) and `wheel/heap`, the ratio of their totals.
constexpr std::size_t kRearmSlice = 50'000;

void bm_rearm_ab(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const Workload& w = workload_for(n);
    SteadyState<WheelQueue>& wheel = steady_state<WheelQueue>(n);
    SteadyState<HeapQueue>& heap = steady_state<HeapQueue>(n);
    double wheel_s = 0;
    double heap_s = 0;
    bool wheel_first = true;
    for (auto _ : state) {
        double w_s = 0;
        double h_s = 0;
        if (wheel_first) {
            w_s = rearm_slice(wheel, w, kRearmSlice);
            h_s = rearm_slice(heap, w, kRearmSlice);
        } else {
            h_s = rearm_slice(heap, w, kRearmSlice);
            w_s = rearm_slice(wheel, w, kRearmSlice);
        }
        wheel_first = !wheel_first;
        state.SetIterationTime(w_s + h_s);
        wheel_s += w_s;
        heap_s += h_s;
    }
    if (wheel.queue->size() != n || heap.queue->size() != n) {
        state.SkipWithError("re-arming changed the number of armed timers");
    }
    const auto per_side = static_cast<double>(state.iterations()) * kRearmSlice;
    state.SetItemsProcessed(static_cast<std::int64_t>(2 * per_side));
    state.counters["wheel"] = wheel_s / per_side;
    state.counters["heap"] = heap_s / per_side;
    state.counters["wheel/heap"] = wheel_s / heap_s;
}

// The churn workloads' queue: like SteadyState, but with its own clock, which
// moves one tick every n / kChurnTicksBetweenRearms re-arms.
template <class Queue>
struct ChurnState {
    std::unique_ptr<Queue> queue;
    Instant now = kStart;
    std::size_t next_op = 0;
    std::size_t since_tick = 0;
};

// Each timer is re-armed about once every this many ticks (1 s): with
// deadlines uniform over 30 s, about 3% of the timers fire before that.
constexpr std::size_t kChurnTicksBetweenRearms = 100;

// How a churn re-arm picks the new deadline: kUniform, now + a fresh random
// offset (earlier or later than the old deadline, like `rearm`); kHeartbeat,
// now + the timer's own fixed timeout (its arm offset), so always later.
enum class Churn { kUniform, kHeartbeat };

// Runs `count` re-arms on `s`, advancing its clock as it goes, and returns how
// many timers fired (each re-armed from the callback).
template <Churn kMode, class Queue>
std::size_t churn(ChurnState<Queue>& s, const Workload& w, std::size_t n, std::int64_t count) {
    Queue& q = *s.queue;
    const RearmOp* ops = w.rearm_ops.data();
    const std::size_t rearms_per_tick = std::max<std::size_t>(1, n / kChurnTicksBetweenRearms);
    std::size_t fired = 0;
    auto rearm = [&](std::uint32_t id) {
        const std::int64_t offset_ns = kMode == Churn::kHeartbeat ? w.arm_offset_ns[id] : ops[s.next_op].offset_ns;
        s.next_op = (s.next_op + 1) & (kRearmOps - 1);
        q.schedule(id, s.now + Duration::nanoseconds(offset_ns));
    };
    for (std::int64_t i = 0; i < count; ++i) {
        rearm(ops[s.next_op].id);
        if (++s.since_tick == rearms_per_tick) {
            s.since_tick = 0;
            s.now += kTick;
            fired += q.advance(s.now, rearm);
        }
    }
    return fired;
}

template <Churn kMode, class Queue>
ChurnState<Queue>& churn_state(std::size_t n) {
    static std::map<std::size_t, ChurnState<Queue>> states;
    ChurnState<Queue>& s = states[n];
    if (!s.queue) {
        s.queue = std::make_unique<Queue>(n, kStart);
        arm_all(*s.queue, workload_for(n), kStart, PhaseClock(0));
        // Warm up for 30 simulated seconds, the deadlines' spread, so that the
        // timed runs start from the steady state and not from the initial fill.
        churn<kMode>(s, workload_for(n), n,
                     static_cast<std::int64_t>(std::max<std::size_t>(1, n / kChurnTicksBetweenRearms) *
                                               static_cast<std::size_t>(kSpread / kTick)));
    }
    return s;
}

// Timed by Google Benchmark itself (CPU time); one iteration is one re-arm,
// and `per_op` divides the time by re-arms plus fires.
template <Churn kMode, class Queue>
void bm_churn(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const Workload& w = workload_for(n);
    ChurnState<Queue>& s = churn_state<kMode, Queue>(n);
    std::size_t fired = 0;
    for (auto _ : state) fired += churn<kMode>(s, w, n, 1);
    if (s.queue->size() != n) state.SkipWithError("churn changed the number of armed timers");
    const auto items = static_cast<double>(state.iterations()) + static_cast<double>(fired);
    state.SetItemsProcessed(static_cast<std::int64_t>(items));
    state.counters["per_op"] = benchmark::Counter(items, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    state.counters["fired_share"] = static_cast<double>(fired) / items;
}

void report_phases(benchmark::State& state, std::size_t n, const std::vector<double>& arm_s,
                   const std::vector<double>& phase_s) {
    const auto dn = static_cast<double>(n);
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
    state.counters["per_op"] = median(phase_s) / dn;
    state.counters["schedule_per_op"] = median(arm_s) / dn;
}

// Manual time: each iteration arms N timers (untimed, but measured for the
// schedule_per_op counter) and then cancels them all (timed).
template <class Queue>
void bm_cancel(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const Workload& w = workload_for(n);
    const PhaseClock clock(n);
    Queue q(n, kStart);
    std::vector<double> arm_s;
    std::vector<double> phase_s;
    for (auto _ : state) {
        arm_s.push_back(arm_all(q, w, kStart, clock));
        const std::int64_t begin = clock.now_ns();
        for (const std::uint32_t id : w.cancel_order) q.cancel(id);
        phase_s.push_back(static_cast<double>(clock.now_ns() - begin) * 1e-9);
        state.SetIterationTime(phase_s.back());
        if (q.size() != 0) state.SkipWithError("cancel left timers armed");
    }
    report_phases(state, n, arm_s, phase_s);
}

// Manual time: each iteration arms N timers (untimed, but measured for the
// schedule_per_op counter) and then lets them all expire (timed).
template <class Queue>
void bm_expire(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const Workload& w = workload_for(n);
    const PhaseClock clock(n);
    Queue q(n, kStart);
    Instant now = kStart;
    std::uint64_t id_sum = 0;  // Gives the callback something to do that cannot be elided.
    std::vector<double> arm_s;
    std::vector<double> phase_s;
    for (auto _ : state) {
        arm_s.push_back(arm_all(q, w, now, clock));
        std::size_t fired = 0;
        const std::int64_t begin = clock.now_ns();
        // The runtime's loop: sleep until the next expiry, then advance to it.
        while (q.size() != 0) {
            now = q.next_expiry();
            fired += q.advance(now, [&](std::uint32_t id) { id_sum += id; });
        }
        phase_s.push_back(static_cast<double>(clock.now_ns() - begin) * 1e-9);
        state.SetIterationTime(phase_s.back());
        if (fired != n) state.SkipWithError("expire did not fire every timer exactly once");
    }
    benchmark::DoNotOptimize(id_sum);
    report_phases(state, n, arm_s, phase_s);
}

// Names are "<workload>/<implementation>/<N>".
benchmark::internal::Benchmark* add(const char* workload, const char* impl, void (*body)(benchmark::State&),
                                    std::int64_t n) {
    std::string name = workload;
    name += '/';
    name += impl;
    return benchmark::RegisterBenchmark(name.c_str(), body)->Arg(n)->Unit(benchmark::kNanosecond);
}

void register_benchmarks() {
    constexpr std::int64_t kSizes[] = {1'000, 100'000, 1'000'000};
    for (const std::int64_t n : kSizes) {
        add("rearm", "wheel", bm_rearm<WheelQueue>, n)->Iterations(kRearmIterations);
        add("rearm", "heap", bm_rearm<HeapQueue>, n)->Iterations(kRearmIterations);
        // No compaction to span, and 1M re-arms take a second or two: left to min_time.
        add("rearm", "multimap", bm_rearm<MultimapQueue>, n);
        add("rearm", "floor", bm_rearm<FloorQueue>, n)->Iterations(kRearmIterations);
        add("rearm_ab", "wheel:heap", bm_rearm_ab, n)
            ->Iterations(kRearmIterations / static_cast<std::int64_t>(kRearmSlice))
            ->UseManualTime();
        add("cancel_schedule", "wheel", bm_rearm<WheelQueue, true>, n)->Iterations(kRearmIterations);
        add("cancel_schedule", "heap", bm_rearm<HeapQueue, true>, n)->Iterations(kRearmIterations);
        add("churn", "wheel", bm_churn<Churn::kUniform, WheelQueue>, n)->Iterations(kRearmIterations);
        add("churn", "heap", bm_churn<Churn::kUniform, HeapQueue>, n)->Iterations(kRearmIterations);
        add("heartbeat", "wheel", bm_churn<Churn::kHeartbeat, WheelQueue>, n)->Iterations(kRearmIterations);
        add("heartbeat", "heap", bm_churn<Churn::kHeartbeat, HeapQueue>, n)->Iterations(kRearmIterations);
    }
    for (const std::int64_t n : kSizes) {
        add("cancel", "wheel", bm_cancel<WheelQueue>, n)->UseManualTime();
        add("cancel", "heap", bm_cancel<HeapQueue>, n)->UseManualTime();
        add("cancel", "multimap", bm_cancel<MultimapQueue>, n)->UseManualTime();
    }
    for (const std::int64_t n : kSizes) {
        add("expire", "wheel", bm_expire<WheelQueue>, n)->UseManualTime();
        add("expire", "heap", bm_expire<HeapQueue>, n)->UseManualTime();
        add("expire", "multimap", bm_expire<MultimapQueue>, n)->UseManualTime();
    }
}

}  // namespace
}  // namespace lifeline

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    lifeline::register_benchmarks();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
