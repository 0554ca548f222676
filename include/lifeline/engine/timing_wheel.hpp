// A hierarchical hashed timing wheel with intrusive, caller-owned timer nodes.
//
// Design (Varghese & Lauck 1987, "Hashed and hierarchical timing wheels"; the
// digit placement is the one Linux used before 4.8 and folly's HHWheelTimer uses):
// time is counted in ticks since the wheel's start. A deadline tick is a 64-bit
// number read as 8-bit digits; a timer sits on the level of the highest digit in
// which its deadline differs from the current tick, in the slot named by that
// digit. So every timer on level L expires before every timer on level L+1, and
// a level-L slot is "cascaded" (its timers re-placed lower) exactly when the
// current tick reaches the start of that slot. Four levels of 256 slots cover
// 2^32 ticks (497 days at 10 ms); later deadlines wait on an overflow list.
//
// Costs: schedule, cancel and reschedule are O(1) and allocate nothing (the node
// lives inside the caller's object). advance() is linear in the timers it expires
// or cascades plus O(levels) per non-empty slot it visits: it jumps over empty
// ticks using per-level occupancy bitmaps, so a long sleep costs nothing extra.
// next_expiry() is never later than the earliest deadline, so a runtime can
// sleep exactly until it (see its comment for the cases it is earlier).
//
// Re-arming later is lazy, Netty's IdleStateHandler idea moved inside the
// wheel: with a million timers the nodes are spread over more memory than the
// caches hold, and moving a node to another slot writes its two old list
// neighbours and its new one, cache misses on top of the node's own. So a node
// above level 0 that is re-armed to a tick at or after the one it was placed by
// only has its deadline stored; it stays in its slot, and when that slot is
// cascaded (which happens no later than that tick, hence before the new
// deadline) it is re-placed by its real deadline. A node therefore records
// deadline_ (the real deadline; its tick is derived when needed) and
// slot_tick_ (the tick it was placed by, which names its slot and is never
// later than the deadline's tick). Re-arming earlier than slot_tick_ moves the
// node, so nothing can fire late. On level 0 only a re-arm within the same
// tick stays put: those slots expire by being spliced whole onto the ready
// list, which must then hold only due timers. docs/BENCHMARKS.md has the
// measurements: re-arms at 1M timers and always-later (heartbeat) re-arms got
// cheaper; re-arms going earlier and later at random got dearer below 1M.
//
// Expired timers are first collected, then handed to the callback one by one
// (libuv's uv__run_timers does the same), so a callback may cancel or
// re-schedule any timer, including the one being fired, without corrupting the
// wheel. A timer scheduled during a callback for a deadline at or before the
// wheel's current tick fires on the next advance(), never in the same one, so
// a callback that re-arms "now" cannot loop forever.
//
// Not thread-safe: one wheel per event loop.
#pragma once

#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>

#include "lifeline/check.hpp"
#include "lifeline/time.hpp"

namespace lifeline {

// A timer. Embed it in the object it times; the wheel links it, never owns it.
// A node must be cancelled (or have fired) before it is destroyed or moved.
class TimerNode {
public:
    TimerNode() = default;
    TimerNode(const TimerNode&) = delete;
    TimerNode& operator=(const TimerNode&) = delete;
    ~TimerNode() {
        LIFELINE_CHECK(!armed(), "a TimerNode is destroyed while armed (its wheel would point at freed memory)");
    }

    bool armed() const { return next_ != nullptr; }
    // The instant the timer was scheduled for (valid while armed).
    Instant deadline() const { return deadline_; }

private:
    friend class TimingWheel;
    friend class TimerList;
    TimerNode* prev_ = nullptr;
    TimerNode* next_ = nullptr;
    // The tick the node was placed by: it sits on that tick's slot (or on the
    // overflow list). At most the tick of deadline_, which is later after a lazy
    // re-arm (see the design comment). On the due and ready lists it is <= the
    // wheel's current tick, and only there.
    std::uint64_t slot_tick_ = 0;
    Instant deadline_;
};

// Circular doubly-linked list of TimerNodes with a sentinel (internal).
class TimerList {
public:
    TimerList() { sentinel_.prev_ = sentinel_.next_ = &sentinel_; }
    ~TimerList() { sentinel_.prev_ = sentinel_.next_ = nullptr; }
    TimerList(const TimerList&) = delete;
    TimerList& operator=(const TimerList&) = delete;

    bool empty() const { return sentinel_.next_ == &sentinel_; }
    TimerNode* front() const { return empty() ? nullptr : sentinel_.next_; }
    void push_back(TimerNode* node);
    static void unlink(TimerNode* node);
    // Moves all of `other`'s nodes to the end of this list in O(1).
    void splice_back(TimerList& other);

private:
    TimerNode sentinel_;
};

struct TimingWheelConfig {
    Duration tick = Duration::milliseconds(10);
};

class TimingWheel {
public:
    static constexpr int kLevels = 4;
    static constexpr int kSlotBits = 8;
    static constexpr int kSlots = 1 << kSlotBits;

    // Ticks are counted from `start`; instants before it are treated as `start`.
    TimingWheel(Instant start, TimingWheelConfig config = {});
    TimingWheel(const TimingWheel&) = delete;
    TimingWheel& operator=(const TimingWheel&) = delete;
    ~TimingWheel();

    // Arms `node` to fire at the first tick boundary at or after `deadline`
    // (never early, at most one tick late). Re-arms it if it was armed; a re-arm
    // to a later deadline often only writes the node (see the design comment).
    void schedule(TimerNode& node, Instant deadline);
    // Disarms `node`; a no-op if it is not armed.
    void cancel(TimerNode& node);

    // Fires every timer whose deadline tick is <= the tick of `now`, in deadline
    // order, calling on_expired(TimerNode&) for each after all are collected.
    // Returns how many fired. `now` earlier than a previous call is a no-op.
    template <class Callback>
    std::size_t advance(Instant now, Callback&& on_expired) {
        collect_expired(now);
        std::size_t fired = 0;
        while (TimerNode* node = ready_.front()) {
            TimerList::unlink(node);
            --size_;
            ++fired;
            on_expired(*node);
        }
        return fired;
    }

    // advance(), bounded: before each timer after the first it asks
    // keep_going(), and once that says false it stops, leaving the timers not
    // yet handed out due: they fire first, in order, at the next advance().
    // A loop uses it to cap the work one turn spends on timers.
    template <class Callback, class KeepGoing>
    std::size_t advance_while(Instant now, Callback&& on_expired, KeepGoing&& keep_going) {
        collect_expired(now);
        std::size_t fired = 0;
        while (TimerNode* node = ready_.front()) {
            if (fired > 0 && !keep_going()) {
                defer_ready();
                break;
            }
            TimerList::unlink(node);
            --size_;
            ++fired;
            on_expired(*node);
        }
        return fired;
    }

    // The earliest instant at which advance() has work, Instant::never() when
    // no timer is armed. Never later than the earliest deadline, and exact when
    // the earliest timer is on the lowest level. For a later level it is the
    // earliest deadline placed into that slot, which is earlier than the true
    // one if that timer was since cancelled or re-armed later: the wheel then
    // wakes once early for that slot (advance() fires nothing but re-places the
    // slot's timers) and re-computes.
    Instant next_expiry() const;

    std::size_t size() const { return size_; }
    Duration tick() const { return tick_; }
    // The instant up to which every due timer has fired.
    Instant current_time() const { return time_of(current_tick_); }

private:
    struct Level {
        std::array<TimerList, kSlots> slots;
        std::array<std::uint64_t, kSlots / 64> occupied{};  // Bit s set <=> slots[s] non-empty.
        // A lower bound on the deadline ticks in each slot: the least slot_tick_
        // placed there since the slot was last empty.
        std::array<std::uint64_t, kSlots> min_deadline_tick{};
    };

    std::uint64_t tick_of(Instant t, bool round_up) const;
    Instant time_of(std::uint64_t tick) const { return start_ + tick_ * static_cast<std::int64_t>(tick); }
    // The tick of node.deadline_ (its real deadline), given slot_tick_ <= it.
    std::uint64_t deadline_tick(const TimerNode& node) const;
    void place(TimerNode& node, std::uint64_t tick);
    // For a node taken off a slot that the current tick has reached: fires it
    // (onto ready_) if its real deadline has come, else places it by that deadline.
    void requeue(TimerNode* node, Instant current);
    // requeue()s every node of `pending`, emptying it.
    void requeue_all(TimerList& pending, Instant current);
    void collect_expired(Instant now);
    // Moves the ready timers not handed out to the front of due_.
    void defer_ready();
    struct NextEvent {
        std::uint64_t tick;  // > current_tick_, or UINT64_MAX when nothing is armed.
        int level;           // kLevels for the overflow list.
    };
    // The next tick at which a slot must expire (level 0) or cascade (above).
    NextEvent next_event() const;
    void process_tick(std::uint64_t tick);
    void cascade(int level, int slot, Instant current);
    void mark(int level, int slot);
    void clear_if_empty(int level, int slot);
    int next_occupied(int level, int from_slot) const;

    Instant start_;
    Duration tick_;
    std::uint64_t current_tick_ = 0;
    std::size_t size_ = 0;
    std::array<Level, kLevels> levels_;
    TimerList overflow_;  // Deadlines more than 2^32 ticks ahead.
    std::uint64_t overflow_min_tick_ = UINT64_MAX;
    TimerList due_;    // Scheduled at or before the current tick: fire on the next advance().
    TimerList ready_;  // Collected by advance(), being handed to the callback.
};

}  // namespace lifeline
