// A worker's connections, in place: blocks of slots that never move, a slot's
// number naming its place. An idle connection used to pay a std::unique_ptr
// in the worker's slab (8 bytes) and a malloc header with its rounding (8
// more: a 232-byte Connection took a 240-byte chunk), and its long-lived
// chunk sat among the heap's short-lived ones, keeping their holes
// (docs/BENCHMARKS.md). Here it pays sizeof(Connection) and 2 bits.
// Internal to src/runtime; loop thread only.
//
// A slot is free, live (find() names it), or retired: finished, no longer
// live, but not yet destroyed (later events of the same epoll batch may
// still name it, or the ring still has operations for it). Only destroy()
// frees the slot for reuse.
#pragma once

#include <cstdint>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "lifeline/check.hpp"
#include "runtime/server_connection.hpp"

namespace lifeline::runtime {

class ConnectionSlab {
public:
    ConnectionSlab() = default;
    ~ConnectionSlab() {
        for (std::uint32_t slot = 0; slot < constructed_.size(); ++slot) {
            if (constructed_[slot]) place(slot)->~Connection();
        }
    }
    ConnectionSlab(const ConnectionSlab&) = delete;
    ConnectionSlab& operator=(const ConnectionSlab&) = delete;

    // The slot the next connection goes to (a freed one first).
    std::uint32_t next_slot() const {
        return free_.empty() ? static_cast<std::uint32_t>(constructed_.size()) : free_.back();
    }
    // Constructs a live connection in next_slot(), which must be `slot`.
    template <class... Args>
    Connection& emplace(std::uint32_t slot, Args&&... args) {
        LIFELINE_CHECK(slot == next_slot(), "a connection goes to the slot next_slot() named");
        if (slot / kBlockSlots == blocks_.size())
            blocks_.emplace_back(static_cast<Slot*>(::operator new(sizeof(Slot) * kBlockSlots)));
        auto* c = new (place(slot)) Connection(std::forward<Args>(args)...);
        if (!free_.empty()) {
            free_.pop_back();
        } else {
            constructed_.push_back(false);
            live_.push_back(false);
        }
        constructed_[slot] = true;
        live_[slot] = true;
        return *c;
    }
    // The live connection in `slot`, or nullptr.
    Connection* live(std::uint32_t slot) const { return slot < live_.size() && live_[slot] ? place(slot) : nullptr; }
    // Slots 0..end() - 1 may be live.
    std::uint32_t end() const { return static_cast<std::uint32_t>(live_.size()); }
    // Finished: no longer live(), still there until destroy().
    void retire(std::uint32_t slot) {
        LIFELINE_CHECK(live(slot) != nullptr, "only a live connection retires");
        live_[slot] = false;
    }
    // Destroys a retired connection; its slot is free again.
    void destroy(Connection& c) {
        const std::uint32_t slot = c.slot();
        LIFELINE_CHECK(slot < constructed_.size() && constructed_[slot] && !live_[slot] && place(slot) == &c,
                       "only a retired connection of this slab is destroyed");
        c.~Connection();
        constructed_[slot] = false;
        free_.push_back(slot);
    }

private:
    // 1,024 slots a block (about 220 KiB): memory a block has not handed out
    // yet is never touched, so it is never resident.
    static constexpr std::uint32_t kBlockSlots = 1024;
    struct alignas(Connection) Slot {
        unsigned char bytes[sizeof(Connection)];
    };
    struct FreeBlock {
        void operator()(Slot* block) const { ::operator delete(block); }
    };
    Connection* place(std::uint32_t slot) const {
        return std::launder(reinterpret_cast<Connection*>(blocks_[slot / kBlockSlots].get()[slot % kBlockSlots].bytes));
    }

    std::vector<std::unique_ptr<Slot, FreeBlock>> blocks_;
    std::vector<bool> constructed_;
    std::vector<bool> live_;
    std::vector<std::uint32_t> free_;
};

}  // namespace lifeline::runtime
