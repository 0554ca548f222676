#include "lifeline/engine/timing_wheel.hpp"

#include <algorithm>
#include <bit>
#include <limits>

#include "lifeline/check.hpp"

namespace lifeline {

namespace {
constexpr std::uint64_t kNoTick = std::numeric_limits<std::uint64_t>::max();
constexpr int kWheelBits = TimingWheel::kLevels * TimingWheel::kSlotBits;  // 32

int digit(std::uint64_t tick, int level) {
    return static_cast<int>((tick >> (level * TimingWheel::kSlotBits)) & (TimingWheel::kSlots - 1));
}

// The level a deadline belongs on: its highest digit that differs from `current`.
// Requires deadline > current. Returns >= kLevels for the overflow list.
int level_for(std::uint64_t deadline_tick, std::uint64_t current_tick) {
    const std::uint64_t diff = deadline_tick ^ current_tick;
    return (63 - std::countl_zero(diff)) / TimingWheel::kSlotBits;
}
}  // namespace

void TimerList::push_back(TimerNode* node) {
    LIFELINE_CHECK(!node->armed(), "a node is linked into one timer list at a time");
    node->prev_ = sentinel_.prev_;
    node->next_ = &sentinel_;
    sentinel_.prev_->next_ = node;
    sentinel_.prev_ = node;
}

void TimerList::unlink(TimerNode* node) {
    node->prev_->next_ = node->next_;
    node->next_->prev_ = node->prev_;
    node->prev_ = node->next_ = nullptr;
}

void TimerList::splice_back(TimerList& other) {
    if (other.empty()) return;
    TimerNode* first = other.sentinel_.next_;
    TimerNode* last = other.sentinel_.prev_;
    first->prev_ = sentinel_.prev_;
    sentinel_.prev_->next_ = first;
    last->next_ = &sentinel_;
    sentinel_.prev_ = last;
    other.sentinel_.next_ = other.sentinel_.prev_ = &other.sentinel_;
}

TimingWheel::TimingWheel(Instant start, TimingWheelConfig config) : start_(start), tick_(config.tick) {
    assert(start.is_set() && !start.is_never());
    assert(config.tick > Duration::zero());
}

TimingWheel::~TimingWheel() {
    // Disarm whatever is still linked so the nodes' owners see them unarmed.
    auto drain = [](TimerList& list) {
        while (TimerNode* node = list.front()) TimerList::unlink(node);
    };
    for (Level& level : levels_) {
        for (TimerList& slot : level.slots) drain(slot);
    }
    drain(overflow_);
    drain(due_);
    drain(ready_);
}

std::uint64_t TimingWheel::tick_of(Instant t, bool round_up) const {
    if (t <= start_) return 0;
    const std::int64_t ns = (t - start_).ns();
    auto ticks = static_cast<std::uint64_t>(ns / tick_.ns());
    if (round_up && ns % tick_.ns() != 0) ++ticks;
    return ticks;
}

std::uint64_t TimingWheel::deadline_tick(const TimerNode& node) const {
    // Most nodes were never re-armed later: a compare then saves the division.
    if (node.deadline_ <= time_of(node.slot_tick_)) return node.slot_tick_;
    return tick_of(node.deadline_, /*round_up=*/true);
}

void TimingWheel::schedule(TimerNode& node, Instant deadline) {
    assert(deadline.is_set());
    // The lazy re-arm (see the header): an armed node in a slot above level 0
    // (not on the due or ready list, whose slot_tick_ is <= current_tick_),
    // re-armed to a tick >= the one it was placed by, stays where it is. On
    // level 0 only a re-arm to the same tick does: a slot there is spliced
    // whole onto ready_ when it expires, and walking it to re-place lazy nodes
    // was measured to cost more at 1M timers (one dependent cache miss per
    // node) than it saved. The tick tests avoid tick_of()'s division, which
    // only a moved node needs.
    if (node.armed() && node.slot_tick_ > current_tick_) {
        const std::uint64_t placed = node.slot_tick_;
        if (deadline > time_of(placed - 1) && ((placed ^ current_tick_) >= kSlots || deadline <= time_of(placed))) {
            node.deadline_ = deadline;
            return;
        }
    }
    const std::uint64_t tick = tick_of(deadline, /*round_up=*/true);
    cancel(node);
    node.deadline_ = deadline;
    ++size_;
    if (tick <= current_tick_) {
        node.slot_tick_ = tick;
        due_.push_back(&node);
        return;
    }
    place(node, tick);
}

void TimingWheel::place(TimerNode& node, std::uint64_t tick) {
    LIFELINE_CHECK(tick > current_tick_, "a timer is placed after the current tick, never on or before it");
    node.slot_tick_ = tick;
    const int level = level_for(tick, current_tick_);
    if (level >= kLevels) {
        overflow_.push_back(&node);
        overflow_min_tick_ = std::min(overflow_min_tick_, tick);
        return;
    }
    const int slot = digit(tick, level);
    Level& lv = levels_[level];
    if (lv.slots[slot].empty()) {
        lv.min_deadline_tick[slot] = tick;
        mark(level, slot);
    } else {
        lv.min_deadline_tick[slot] = std::min(lv.min_deadline_tick[slot], tick);
    }
    lv.slots[slot].push_back(&node);
}

void TimingWheel::requeue(TimerNode* node, Instant current) {
    // The node sat in a slot that starts at the current tick, placed by a tick
    // no later than its deadline's: the deadline's tick is the current one at
    // the earliest, and on it exactly when the deadline is <= current_time().
    if (node->deadline_ <= current) {
        node->slot_tick_ = current_tick_;
        ready_.push_back(node);  // Due exactly now.
    } else {
        place(*node, deadline_tick(*node));
    }
}

void TimingWheel::cancel(TimerNode& node) {
    if (!node.armed()) return;
    TimerList::unlink(&node);
    --size_;
    const std::uint64_t placed = node.slot_tick_;
    if (placed <= current_tick_) return;  // It was on the due or ready list.
    const int level = level_for(placed, current_tick_);
    if (level < kLevels) clear_if_empty(level, digit(placed, level));
}

void TimingWheel::mark(int level, int slot) { levels_[level].occupied[slot / 64] |= std::uint64_t{1} << (slot % 64); }

void TimingWheel::clear_if_empty(int level, int slot) {
    if (!levels_[level].slots[slot].empty()) return;
    levels_[level].occupied[slot / 64] &= ~(std::uint64_t{1} << (slot % 64));
}

int TimingWheel::next_occupied(int level, int from_slot) const {
    const auto& bits = levels_[level].occupied;
    for (int word = from_slot / 64; word < kSlots / 64; ++word) {
        std::uint64_t w = bits[word];
        if (word == from_slot / 64) w &= ~std::uint64_t{0} << (from_slot % 64);
        if (w != 0) return word * 64 + std::countr_zero(w);
    }
    return -1;
}

TimingWheel::NextEvent TimingWheel::next_event() const {
    for (int level = 0; level < kLevels; ++level) {
        // Invariant: every occupied slot on a level lies after the current digit.
        const int from = digit(current_tick_, level) + 1;
        if (from >= kSlots) continue;
        const int slot = next_occupied(level, from);
        if (slot < 0) continue;
        const int shift = (level + 1) * kSlotBits;
        const std::uint64_t prefix = (current_tick_ >> shift) << shift;
        return {prefix | (static_cast<std::uint64_t>(slot) << (level * kSlotBits)), level};
    }
    if (!overflow_.empty()) return {((current_tick_ >> kWheelBits) + 1) << kWheelBits, kLevels};
    return {kNoTick, kLevels};
}

Instant TimingWheel::next_expiry() const {
    if (!due_.empty() || !ready_.empty()) return current_time();
    const NextEvent event = next_event();
    if (event.tick == kNoTick) return Instant::never();
    // On level 0 the slot's tick is the deadline; above it, the event is the
    // cascade and the slot's recorded minimum is the earliest deadline.
    std::uint64_t earliest = event.tick;
    if (event.level == kLevels) {
        earliest = std::max(event.tick, overflow_min_tick_);
    } else if (event.level > 0) {
        earliest = std::max(event.tick, levels_[event.level].min_deadline_tick[digit(event.tick, event.level)]);
    }
    return start_ + tick_ * static_cast<std::int64_t>(earliest);
}

void TimingWheel::collect_expired(Instant now) {
    ready_.splice_back(due_);
    const std::uint64_t target = tick_of(now, /*round_up=*/false);
    while (current_tick_ < target) {
        const std::uint64_t event = next_event().tick;
        if (event > target) {
            current_tick_ = target;
            break;
        }
        current_tick_ = event;
        process_tick(event);
    }
}

void TimingWheel::defer_ready() {
    // Ready nodes were due before anything a callback scheduled onto due_.
    TimerList order;
    order.splice_back(ready_);
    order.splice_back(due_);
    due_.splice_back(order);
}

void TimingWheel::process_tick(std::uint64_t tick) {
    const Instant current = current_time();
    // Higher levels first: a timer cascaded from level 3 may land in a level-2
    // slot that this same tick must cascade, and finally in level 0's.
    if ((tick & ((std::uint64_t{1} << kWheelBits) - 1)) == 0 && !overflow_.empty()) {
        TimerList pending;
        pending.splice_back(overflow_);
        overflow_min_tick_ = kNoTick;
        // A deadline exactly on this 2^32-tick boundary is due now: place()
        // only takes ticks after the current one, and requeue() knows that.
        requeue_all(pending, current);
    }
    for (int level = kLevels - 1; level >= 1; --level) {
        const std::uint64_t below_mask = (std::uint64_t{1} << (level * kSlotBits)) - 1;
        if ((tick & below_mask) == 0) cascade(level, digit(tick, level), current);
    }
    // Every node on a level-0 slot is due at its tick: a lazy re-arm leaves a
    // node there only when the new deadline is in the same tick.
    const int slot = digit(tick, 0);
    ready_.splice_back(levels_[0].slots[slot]);
    clear_if_empty(0, slot);
}

void TimingWheel::cascade(int level, int slot, Instant current) {
    TimerList& list = levels_[level].slots[slot];
    if (list.empty()) return;
    TimerList pending;
    pending.splice_back(list);
    clear_if_empty(level, slot);
    requeue_all(pending, current);
}

void TimingWheel::requeue_all(TimerList& pending, Instant current) {
    while (TimerNode* node = pending.front()) {
        TimerList::unlink(node);
        requeue(node, current);
    }
}

}  // namespace lifeline
