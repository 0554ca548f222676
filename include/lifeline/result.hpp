// Result<T>: the one error-or-value type of the project (g++ 12 has no std::expected).
//
// Operating errors are values with context: what failed, on what, and the errno
// where there is one. Programmer errors are assertions, not Results.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace lifeline {

struct Error {
    std::string message;  // Whole sentence fragment: "setsockopt(TCP_KEEPIDLE, 40000 s): value out of range 1..32767".
    int sys_errno = 0;    // errno when a syscall failed, else 0.

    // Prepends context, e.g. err.with_context("socket 7") -> "socket 7: <message>".
    Error with_context(const std::string& context) const { return Error{context + ": " + message, sys_errno}; }
};

// Builds an Error from a syscall failure: "<what>: <strerror(errnum)>".
Error system_error(const std::string& what, int errnum);

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
