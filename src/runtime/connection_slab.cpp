#include "runtime/connection_slab.hpp"

#include <sys/mman.h>

namespace lifeline::runtime {

// Here, beside the block layout it reads.
std::uint32_t Connection::slot() const { return ConnectionSlab::slot_of(*this); }

void* ConnectionSlab::map_aligned(std::size_t bytes) {
    // Twice the size, then the parts before and after the aligned block go back.
    void* mapped = ::mmap(nullptr, 2 * bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped == MAP_FAILED) throw std::bad_alloc();
    const auto start = reinterpret_cast<std::uintptr_t>(mapped);
    const std::uintptr_t aligned = (start + bytes - 1) & ~std::uintptr_t{bytes - 1};
    if (aligned > start) unmap(mapped, aligned - start);
    if (const std::uintptr_t end = start + 2 * bytes; end > aligned + bytes)
        unmap(reinterpret_cast<void*>(aligned + bytes), end - (aligned + bytes));
    return reinterpret_cast<void*>(aligned);
}

void ConnectionSlab::unmap(void* block, std::size_t bytes) {
    const int r = ::munmap(block, bytes);
    LIFELINE_CHECK(r == 0, "munmap fails only for a range that is not a mapping of ours");
}

}  // namespace lifeline::runtime
