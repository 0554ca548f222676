// Result<T>: the one error-or-value type of the project (g++ 12 has no std::expected).
//
// Operating errors are values with context: what failed, on what, and the errno
// where there is one. Programmer errors are assertions, not Results.
#pragma once

#include <cassert>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>

namespace lifeline {

// What kind of failure an Error is: stable values (they are API), so code
// can branch on them; the message is for people. Also a std::error_code
// (make_error_code below; category "lifeline").
enum class Errc : std::uint8_t {
    invalid_argument = 1,   // A value out of range, inconsistent or unparsable; the message names it.
    system = 2,             // A system call failed: sys_errno is its errno.
    refused_by_kernel = 3,  // The kernel rejected a socket option or kept another value than asked.
    not_open = 4,           // The session or connection is not open (yet, or any more).
    too_large = 5,          // Over a configured size limit (a message, a frame).
    unsupported = 6,        // Missing from this build or this kernel (io_uring, pidfd_getfd).
    timed_out = 7,          // No answer in time (the kernel's netlink reply, a child process).
    protocol = 8,           // The peer broke the wire protocol.
};

std::string_view to_string(Errc code);

struct Error {
    std::string message;  // Whole sentence fragment: "setsockopt(TCP_KEEPIDLE, 40000 s): value out of range 1..32767".
    int sys_errno = 0;    // errno when a syscall failed, else 0.
    Errc code = Errc::invalid_argument;
    // Prepends context, e.g. err.with_context("socket 7") -> "socket 7: <message>".
    Error with_context(const std::string& context) const { return Error{context + ": " + message, sys_errno, code}; }
    // The errno as a std::error_code where there is one, else the lifeline code.
    std::error_code error_code() const;
};

// Builds an Error from a syscall failure: "<what>: <strerror(errnum)>", Errc::system.
Error system_error(const std::string& what, int errnum);
// An Error of `code` (no errno unless given).
inline Error make_error(Errc code, std::string message, int sys_errno = 0) {
    return Error{std::move(message), sys_errno, code};
}

const std::error_category& lifeline_category();
inline std::error_code make_error_code(Errc code) { return {static_cast<int>(code), lifeline_category()}; }

template <class T>
class [[nodiscard]] Result {
public:
    Result(T value) : state_(std::move(value)) {}  // NOLINT: implicit by design, like expected.
    Result(Error error) : state_(std::move(error)) {}

    bool ok() const { return std::holds_alternative<T>(state_); }
    explicit operator bool() const { return ok(); }

    T& value() & {
        assert(ok());
        return std::get<T>(state_);
    }
    const T& value() const& {
        assert(ok());
        return std::get<T>(state_);
    }
    T&& value() && {
        assert(ok());
        return std::get<T>(std::move(state_));
    }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const Error& error() const {
        assert(!ok());
        return std::get<Error>(state_);
    }

private:
    std::variant<T, Error> state_;
};

template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error error) : error_(std::move(error)), ok_(false) {}

    bool ok() const { return ok_; }
    explicit operator bool() const { return ok_; }
    const Error& error() const {
        assert(!ok_);
        return error_;
    }

private:
    Error error_;
    bool ok_ = true;
};

}  // namespace lifeline

template <>
struct std::is_error_code_enum<lifeline::Errc> : std::true_type {};
