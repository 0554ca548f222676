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
// Re-arming later is lazy (the trick Linux's timer wheel and Kafka's purgatory
// use in other forms): with a million timers the nodes are spread over more
// memory than the caches hold, and unlinking a node from its slot writes its two
// list neighbours, two more cache misses on top of the node's own. Heartbeat
// timers are mostly pushed later. So when an armed node in a wheel slot is
// re-armed to a deadline at or after the tick of the slot it sits in, only its
// deadline is stored: it stays where it is, and when its slot is cascaded or
// expires it is re-placed by its real deadline instead of firing. A node
// therefore records two things: deadline_ (the real deadline, whose tick is
// derived when needed) and slot_tick_ (the tick it was placed by, which locates
// its slot and is never later than the real deadline's tick). Re-arming earlier
// than slot_tick_ moves the node for real, so it can never fire late.
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

#include "lifeline/time.hpp"

namespace lifeline {

// A timer. Embed it in the object it times; the wheel links it, never owns it.
// A node must be cancelled (or have fired) before it is destroyed or moved.
class TimerNode {
public:
    TimerNode() = default;
    TimerNode(const TimerNode&) = delete;
    TimerNode& operator=(const TimerNode&) = delete;
    ~TimerNode() { assert(!armed() && "destroying an armed TimerNode"); }

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
    // re-arm. On the due and ready lists it is <= the wheel's current tick.
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
    // to a later deadline usually only writes the node (see the design comment).
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

    // The earliest instant at which advance() has work, Instant::never() when
    // no timer is armed. Never later than the earliest deadline, and exact when
    // the earliest timer is on the lowest level and was not re-armed later. It
    // is earlier in two cases, each costing at most one early wake-up per slot
    // (advance() then fires nothing, and the next call is exact again): for a
    // higher level it is the earliest deadline ever placed into that slot,
    // whose timer may since have been cancelled or re-armed later; and a slot
    // whose timers were all re-armed later still reports its own tick, since
    // they are only moved when it is reached.
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
    // Where a tick > current_tick_ is placed: {level, slot}, level kLevels for overflow.
    struct Position {
        int level;
        int slot;
        bool operator==(const Position&) const = default;
    };
    Position position_of(std::uint64_t tick) const;
    void place(TimerNode& node, std::uint64_t tick);
    // For a node taken off a slot that the current tick has reached: fires it
    // (onto ready_) if its real deadline has come, else places it by that deadline.
    void requeue(TimerNode* node, Instant current);
    // requeue()s every node of `pending`, emptying it.
    void requeue_all(TimerList& pending, Instant current);
    void collect_expired(Instant now);
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
    // Bit s set => level-0 slot s may hold a node re-armed later, so expiring it
    // must check each node instead of splicing the whole slot onto ready_.
    std::array<std::uint64_t, kSlots / 64> level0_lazy_{};
    TimerList overflow_;  // Deadlines more than 2^32 ticks ahead.
    std::uint64_t overflow_min_tick_ = UINT64_MAX;
    TimerList due_;       // Scheduled at or before the current tick: fire on the next advance().
    TimerList ready_;     // Collected by advance(), being handed to the callback.
};

}  // namespace lifeline
