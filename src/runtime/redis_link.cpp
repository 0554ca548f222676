// hiredis' async context on our EventLoop. hiredis calls the ev hooks when it
// wants to read or write; we keep one epoll registration whose interest is
// their union, and call redisAsyncHandleRead/Write when the fd is ready.
// hiredis frees its context itself after a failed connect or a disconnect it
// saw; we free it (redisAsyncFree) only outside its callbacks.
#include "runtime/redis_link.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <charconv>

namespace lifeline::runtime {

namespace {

constexpr std::uint64_t kInternalTag = 0;  // SELECT and the PING that says Redis answers.
constexpr Duration kMaxBackoff = Duration::seconds(2);

RedisValue to_value(const redisReply* r) {
    RedisValue v;
    if (r == nullptr) return v;
    switch (r->type) {
        case REDIS_REPLY_INTEGER:
            v.type = RedisValue::Type::integer;
            v.integer = r->integer;
            break;
        case REDIS_REPLY_STRING:
        case REDIS_REPLY_STATUS:
        case REDIS_REPLY_ERROR:
            v.type = r->type == REDIS_REPLY_STRING   ? RedisValue::Type::string
                     : r->type == REDIS_REPLY_STATUS ? RedisValue::Type::status
                                                     : RedisValue::Type::error;
            v.text.assign(r->str, r->len);
            break;
        case REDIS_REPLY_ARRAY:
            v.type = RedisValue::Type::array;
            v.elements.reserve(r->elements);
            for (std::size_t i = 0; i < r->elements; ++i) v.elements.push_back(to_value(r->element[i]));
            break;
        default:
            break;  // nil
    }
    return v;
}

}  // namespace

std::string RedisAddress::to_string() const {
    return "redis://" + host + ":" + std::to_string(port) + (db != 0 ? "/" + std::to_string(db) : "");
}

Result<RedisAddress> parse_redis_url(std::string_view url) {
    const std::string_view scheme = "redis://";
    auto bad = [&](const std::string& why) {
        return make_error(Errc::invalid_argument,
                          "presence: \"" + std::string(url) + "\": " + why + " (expected redis://HOST:PORT[/DB])");
    };
    if (url.substr(0, scheme.size()) != scheme) return bad("not a redis:// URL");
    std::string_view rest = url.substr(scheme.size());
    RedisAddress a;
    if (const std::size_t slash = rest.find('/'); slash != std::string_view::npos) {
        const std::string_view db = rest.substr(slash + 1);
        auto [end, ec] = std::from_chars(db.data(), db.data() + db.size(), a.db);
        if (db.empty() || ec != std::errc() || end != db.data() + db.size() || a.db < 0) return bad("bad DB number");
        rest = rest.substr(0, slash);
    }
    if (const std::size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
        const std::string_view port = rest.substr(colon + 1);
        auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), a.port);
        if (ec != std::errc() || end != port.data() + port.size() || a.port < 1 || a.port > 65535)
            return bad("bad port");
        rest = rest.substr(0, colon);
    }
    if (rest.empty()) return bad("no host");
    a.host = rest;
    return a;
}

RedisLink::RedisLink(EventLoop& loop, RedisAddress address, Duration reply_timeout, Callbacks callbacks)
    : loop_(loop), address_(std::move(address)), reply_timeout_(reply_timeout), callbacks_(std::move(callbacks)) {}

RedisLink::~RedisLink() {
    loop_.cancel(*this);
    if (context_ != nullptr) {
        redisAsyncContext* c = context_;
        context_ = nullptr;
        c->data = nullptr;  // Its callbacks, run by the free, must not reach us.
        redisAsyncFree(c);
    }
    if (registered_) loop_.remove(fd_);
}

void RedisLink::start() { connect(); }

void RedisLink::connect() {
    retry_at_ = Instant::never();
    redisAsyncContext* c = redisAsyncConnect(address_.host.c_str(), address_.port);
    if (c == nullptr || c->err != 0) {
        const std::string why = c != nullptr ? c->errstr : "out of memory";
        if (c != nullptr) redisAsyncFree(c);
        lost("connect to " + address_.to_string() + ": " + why);
        return;
    }
    context_ = c;
    c->data = this;
    fd_ = c->c.fd;
    c->ev.data = this;
    c->ev.addRead = &RedisLink::add_read;
    c->ev.delRead = &RedisLink::del_read;
    c->ev.addWrite = &RedisLink::add_write;
    c->ev.delWrite = &RedisLink::del_write;
    c->ev.cleanup = &RedisLink::cleanup;
    redisAsyncSetConnectCallback(c, &RedisLink::on_connect);
    redisAsyncSetDisconnectCallback(c, &RedisLink::on_disconnect);
    outstanding_ = 1;  // The connect and its PING.
    last_progress_ = loop_.now();
    add_write(this);  // A non-blocking connect completes when the fd is writable.
    arm_timer();
}

bool RedisLink::send(const RedisCommand& command) {
    if (!ready_ || context_ == nullptr) return false;
    std::vector<const char*> argv;
    std::vector<std::size_t> lengths;
    argv.reserve(command.argv.size());
    lengths.reserve(command.argv.size());
    for (const std::string& a : command.argv) {
        argv.push_back(a.data());
        lengths.push_back(a.size());
    }
    const bool subscribe = !command.argv.empty() && command.argv[0] == "SUBSCRIBE";
    void* tag = reinterpret_cast<void*>(static_cast<std::uintptr_t>(command.tag));
    if (redisAsyncCommandArgv(context_, &RedisLink::on_reply, tag, static_cast<int>(argv.size()), argv.data(),
                              lengths.data()) != REDIS_OK)
        return false;
    if (!subscribe) {
        if (outstanding_++ == 0) last_progress_ = loop_.now();
        arm_timer();
    }
    return true;
}

// ---- hiredis callbacks --------------------------------------------------------

void RedisLink::on_connect(const redisAsyncContext* ac, int status) {
    auto* self = static_cast<RedisLink*>(ac->data);
    if (self == nullptr) return;
    if (status != REDIS_OK) {
        // hiredis frees the context after this callback.
        self->context_ = nullptr;
        self->lost("connect to " + self->address_.to_string() + ": " + ac->errstr);
        return;
    }
    auto* c = const_cast<redisAsyncContext*>(ac);
    if (self->address_.db != 0) {
        const std::string db = std::to_string(self->address_.db);
        redisAsyncCommand(c, &RedisLink::on_reply, nullptr, "SELECT %b", db.data(), db.size());
        ++self->outstanding_;
    }
    redisAsyncCommand(c, &RedisLink::on_reply, nullptr, "PING");
}

void RedisLink::on_disconnect(const redisAsyncContext* ac, int status) {
    auto* self = static_cast<RedisLink*>(ac->data);
    if (self == nullptr) return;
    self->context_ = nullptr;  // hiredis frees it after this callback.
    self->lost(status == REDIS_OK ? "disconnected" : std::string("connection lost: ") + ac->errstr);
}

void RedisLink::on_reply(redisAsyncContext* ac, void* reply, void* privdata) {
    auto* self = static_cast<RedisLink*>(ac->data);
    if (self == nullptr || reply == nullptr) return;  // Being freed: the owner hears `down`.
    const auto* r = static_cast<const redisReply*>(reply);
    const auto tag = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(privdata));
    const bool message = r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
                         r->element[0]->type == REDIS_REPLY_STRING &&
                         std::string_view(r->element[0]->str, r->element[0]->len) == "message";
    if (!message && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 && r->element[0]->type == REDIS_REPLY_STRING &&
        std::string_view(r->element[0]->str, r->element[0]->len) == "subscribe")
        return;  // The subscription's confirmation.
    if (!message && self->outstanding_ > 0) {
        --self->outstanding_;
        self->last_progress_ = self->loop_.now();
    }
    if (tag == kInternalTag && !message) {
        if (r->type == REDIS_REPLY_ERROR) {
            // SELECT or PING refused (a bad DB, NOAUTH): never ready; dropped from the timer, outside hiredis.
            self->refused_ = "Redis refused the session: " + std::string(r->str, r->len);
            self->loop_.schedule(*self, self->loop_.now());
            return;
        }
        if (r->type == REDIS_REPLY_STATUS && std::string_view(r->str, r->len) == "PONG" && self->refused_.empty()) {
            self->ready_ = true;
            self->backoff_ = Duration::milliseconds(100);
            self->callbacks_.ready();
        }
        self->arm_timer();
        return;
    }
    self->callbacks_.reply(tag, to_value(r));
    self->arm_timer();
}

void RedisLink::add_read(void* self) {
    static_cast<RedisLink*>(self)->want_read_ = true;
    static_cast<RedisLink*>(self)->update_interest();
}
void RedisLink::del_read(void* self) {
    static_cast<RedisLink*>(self)->want_read_ = false;
    static_cast<RedisLink*>(self)->update_interest();
}
void RedisLink::add_write(void* self) {
    static_cast<RedisLink*>(self)->want_write_ = true;
    static_cast<RedisLink*>(self)->update_interest();
}
void RedisLink::del_write(void* self) {
    static_cast<RedisLink*>(self)->want_write_ = false;
    static_cast<RedisLink*>(self)->update_interest();
}
void RedisLink::cleanup(void* self) {
    auto* link = static_cast<RedisLink*>(self);
    if (link->registered_) link->loop_.remove(link->fd_);
    link->registered_ = false;
    link->want_read_ = link->want_write_ = false;
}

void RedisLink::update_interest() {
    const std::uint32_t events = (want_read_ ? EPOLLIN : 0u) | (want_write_ ? EPOLLOUT : 0u);
    if (!registered_) {
        if (loop_.add(fd_, events, this)) registered_ = true;
        return;
    }
    (void)loop_.modify(fd_, events, this);
}

// ---- Our side -----------------------------------------------------------------

void RedisLink::on_io(std::uint32_t events) {
    if (context_ == nullptr) return;
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) redisAsyncHandleRead(context_);
    if (context_ != nullptr && (events & (EPOLLOUT | EPOLLERR))) redisAsyncHandleWrite(context_);
}

void RedisLink::on_timer() {
    if (context_ == nullptr) {
        if (loop_.now() >= retry_at_)
            connect();
        else
            arm_timer();
        return;
    }
    const bool silent = outstanding_ > 0 && loop_.now() >= last_progress_ + reply_timeout_;
    if (silent || !refused_.empty()) {
        const std::string why =
            !refused_.empty() ? std::exchange(refused_, {})
                              : "no reply from " + address_.to_string() + " for " + lifeline::to_string(reply_timeout_);
        redisAsyncContext* c = context_;
        context_ = nullptr;
        c->data = nullptr;  // The free runs the pending callbacks: not ours any more.
        redisAsyncFree(c);  // Also runs cleanup (unregisters the fd): ev.data is still us.
        lost(why);
        return;
    }
    arm_timer();
}

void RedisLink::lost(const std::string& why) {
    const bool was_ready = ready_;
    ready_ = false;
    outstanding_ = 0;
    if (registered_) loop_.remove(fd_);
    registered_ = false;
    want_read_ = want_write_ = false;
    retry_at_ = loop_.now() + backoff_;
    backoff_ = std::min(backoff_ * 2, kMaxBackoff);
    arm_timer();
    if (was_ready || callbacks_.down) callbacks_.down(why);
}

void RedisLink::arm_timer() {
    Instant at = retry_at_;
    if (context_ != nullptr && outstanding_ > 0) at = std::min(at, last_progress_ + reply_timeout_);
    if (context_ != nullptr && !refused_.empty()) at = loop_.now();  // Dropped at once (on_timer).
    if (at == Instant::never()) {
        loop_.cancel(*this);
        return;
    }
    loop_.schedule(*this, at);
}

}  // namespace lifeline::runtime
