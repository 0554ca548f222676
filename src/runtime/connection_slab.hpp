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
//
// A connection does not store its slot: blocks are page mappings aligned to a
// power of two above their size that begin with their number, so slot_of()
// finds a connection's block by masking its address (4 bytes saved on every
// idle connection). The alignment costs address space, never resident
// memory; mapping a block directly (not through malloc, whose header would
// sit on a page of its own before an aligned block) costs no page either.
#pragma once

#include <bit>
#include <cstddef>
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
        if (slot / kBlockSlots == blocks_.size()) {
            auto* block = static_cast<unsigned char*>(map_aligned(kBlockAlign));
            new (block) BlockHeader{static_cast<std::uint32_t>(blocks_.size())};
            blocks_.emplace_back(block);
        }
        auto* c = new (place(slot)) Connection(std::forward<Args>(args)...);
        LIFELINE_CHECK(slot_of(*c) == slot, "a connection's address names its slot");
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
    // The slot of a connection in any slab, from its address alone.
    static std::uint32_t slot_of(const Connection& c) {
        const auto address = reinterpret_cast<std::uintptr_t>(&c);
        const std::uintptr_t block = address & ~std::uintptr_t{kBlockAlign - 1};
        const std::uint32_t number = std::launder(reinterpret_cast<const BlockHeader*>(block))->number;
        return number * kBlockSlots + static_cast<std::uint32_t>((address - block - kSlotsOffset) / sizeof(Slot));
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
    struct alignas(Connection) Slot {
        unsigned char bytes[sizeof(Connection)];
    };
    struct BlockHeader {
        std::uint32_t number;  // Its index in blocks_.
    };
    static constexpr std::size_t kSlotsOffset = alignof(Slot) > sizeof(BlockHeader) ? alignof(Slot)
                                                                                    : sizeof(BlockHeader);
    // About 1,000 slots a block, in whole pages (the header and the slots:
    // 160 KiB at 160 bytes a connection): memory a block has not handed out
    // yet is never touched, so it is never resident.
    static constexpr std::size_t kPageBytes = 4096;
    static constexpr std::size_t kBlockUsedBytes = (kSlotsOffset + sizeof(Slot) * 1024) / kPageBytes * kPageBytes;
    static constexpr std::uint32_t kBlockSlots = (kBlockUsedBytes - kSlotsOffset) / sizeof(Slot);
    static constexpr std::size_t kBlockAlign = std::bit_ceil(kBlockUsedBytes);
    static_assert(kBlockSlots > 0 && kSlotsOffset + sizeof(Slot) * kBlockSlots <= kBlockAlign);
    // `bytes` (a power of two, at least a page) of fresh pages, aligned to `bytes`.
    static void* map_aligned(std::size_t bytes);
    static void unmap(void* block, std::size_t bytes);
    struct FreeBlock {
        void operator()(unsigned char* block) const { unmap(block, kBlockAlign); }
    };
    Connection* place(std::uint32_t slot) const {
        unsigned char* block = blocks_[slot / kBlockSlots].get();
        return std::launder(reinterpret_cast<Connection*>(block + kSlotsOffset + sizeof(Slot) * (slot % kBlockSlots)));
    }

    std::vector<std::unique_ptr<unsigned char, FreeBlock>> blocks_;
    std::vector<bool> constructed_;
    std::vector<bool> live_;
    std::vector<std::uint32_t> free_;
};

}  // namespace lifeline::runtime
