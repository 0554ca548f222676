// The `lifeline._lifeline` extension (pybind11): the public engine and socket
// helpers of include/lifeline for Python. Thin: conversions only; the rules
// stay in the C++ objects. Python-facing names and docs are in
// python/lifeline/__init__.py and __init__.pyi.
//
// Time crosses as integer nanoseconds of the caller's monotonic clock
// (time.monotonic_ns()); durations as float seconds. Errors raise
// lifeline.LifelineError(code, message). Sessions are not thread-safe: one
// thread (or one asyncio loop) per session, as in C++.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <string>

#include "lifeline/disconnect_reason.hpp"
#include "lifeline/engine/client_session.hpp"
#include "lifeline/engine/server_session.hpp"
#include "lifeline/sys/detection_budget.hpp"
#include "lifeline/sys/socket_options.hpp"
#include "lifeline/sys/tcp_info.hpp"
#include "net/connection_health.hpp"
#include "net/sock_diag.hpp"
#include "net/sysctl.hpp"

namespace py = pybind11;
using namespace lifeline;

namespace {

// Leaked on purpose: a static py::object would be destroyed after the
// interpreter is gone (at exit), which can crash.
py::object* g_error_type = nullptr;

[[noreturn]] void raise(const Error& e) {
    // lifeline::Errc's own names (to_string() gives sentences for people).
    static const char* kCodes[] = {"unknown",   "invalid_argument", "system",    "refused_by_kernel", "not_open",
                                   "too_large", "unsupported",      "timed_out", "protocol"};
    const auto index = static_cast<std::size_t>(e.code);
    py::object err = (*g_error_type)(index < std::size(kCodes) ? kCodes[index] : "unknown", e.message);
    PyErr_SetObject(g_error_type->ptr(), err.ptr());
    throw py::error_already_set();
}

template <typename T>
T value_or_raise(Result<T> r) {
    if (!r) raise(r.error());
    return std::move(*r);
}

void ok_or_raise(const Result<void>& r) {
    if (!r) raise(r.error());
}

Duration seconds(double s) {
    if (!std::isfinite(s) || s < 0) raise(Error{"a duration must be a finite number of seconds >= 0"});
    return Duration::nanoseconds(static_cast<std::int64_t>(std::llround(s * 1e9)));
}
double as_seconds(Duration d) { return d.is_infinite() ? INFINITY : static_cast<double>(d.ns()) / 1e9; }
Instant at(std::int64_t ns) { return Instant::from_ns(ns); }

// A socket object (anything with fileno()) or a descriptor.
int fd_of(const py::object& sock) {
    if (py::isinstance<py::int_>(sock)) return sock.cast<int>();
    return sock.attr("fileno")().cast<int>();
}

py::dict keepalive_dict(const sys::EffectiveKeepalive& k) {
    py::dict d;
    d["enabled"] = k.enabled;
    d["idle"] = as_seconds(k.idle);
    d["interval"] = as_seconds(k.interval);
    d["count"] = k.count;
    d["user_timeout"] = as_seconds(k.user_timeout);
    return d;
}

py::dict tcp_info_dict(const sys::TcpInfo& t) {
    py::dict d;
    d["state"] = std::string(sys::to_string(t.state));
    d["rtt"] = as_seconds(t.rtt);
    d["rttvar"] = as_seconds(t.rttvar);
    d["rto"] = as_seconds(t.rto);
    d["unacked"] = t.unacked;
    d["retransmits"] = t.retransmits;
    d["probes"] = t.probes;
    d["backoff"] = t.backoff;
    d["total_retrans"] = t.total_retrans;
    d["last_data_sent"] = as_seconds(t.last_data_sent);
    d["last_data_received"] = as_seconds(t.last_data_received);
    d["last_ack_received"] = as_seconds(t.last_ack_received);
    d["snd_wnd"] = t.snd_wnd;
    d["notsent_bytes"] = t.notsent_bytes;
    return d;
}

py::dict event_dict(const SessionEvent& e) {
    static const char* kKinds[] = {"hello", "opened", "message", "rtt", "dead", "error", "closed"};
    py::dict d;
    d["kind"] = kKinds[static_cast<int>(e.kind)];
    switch (e.kind) {
        case SessionEventKind::opened:
            d["interval"] = as_seconds(e.interval);
            d["timeout"] = as_seconds(e.timeout);
            d["client_id"] = e.client_id;
            break;
        case SessionEventKind::message:
            d["payload"] = py::bytes(reinterpret_cast<const char*>(e.payload.data()), e.payload.size());
            break;
        case SessionEventKind::rtt:
            d["rtt"] = as_seconds(e.rtt);
            break;
        case SessionEventKind::dead:
            d["reason"] = std::string(to_string(e.reason));
            d["silence"] = as_seconds(e.silence);
            d["budget"] = as_seconds(e.budget);
            break;
        case SessionEventKind::error:
            d["message"] = e.message;
            break;
        case SessionEventKind::closed:
            d["reason"] = std::string(to_string(e.reason));
            d["message"] = e.message;
            break;
        case SessionEventKind::hello:
            d["client_id"] = e.client_id;
            d["credential"] = py::bytes(e.credential);
            break;
    }
    return d;
}

std::span<const std::uint8_t> bytes_view(const py::bytes& b, std::string& keep) {
    keep = b;
    return {reinterpret_cast<const std::uint8_t*>(keep.data()), keep.size()};
}

// A session and the config it points into, kept together.
template <typename Session, typename Config>
struct Owned {
    Config config;
    std::unique_ptr<Session> session;
    py::object poll_transmit() {
        std::optional<Transmit> t = session->poll_transmit();
        if (!t) return py::none();
        return py::bytes(reinterpret_cast<const char*>(t->bytes.data()), t->bytes.size());
    }
    py::object poll_event() {
        std::optional<SessionEvent> e = session->poll_event();
        if (!e) return py::none();
        return event_dict(*e);
    }
    py::object next_timeout() const {
        const Instant t = session->next_timeout();
        if (t.is_never()) return py::none();
        return py::int_(t.ns_since_epoch());
    }
    void receive(const py::bytes& data, std::int64_t now) {
        std::string keep;
        session->receive(bytes_view(data, keep), at(now));
    }
    void send(const py::bytes& data) {
        std::string keep;
        ok_or_raise(session->send(bytes_view(data, keep)));
    }
};

using PyClient = Owned<ClientSession, ClientSessionConfig>;
using PyServer = Owned<ServerSession, ServerSessionConfig>;

std::unique_ptr<PyClient> make_client(std::int64_t now, double interval, double timeout, const std::string& id,
                                      const py::bytes& credential, const py::bytes& resume_token) {
    auto c = std::make_unique<PyClient>();
    c->config.heartbeat = seconds(interval);
    c->config.timeout = seconds(timeout);
    c->config.id = id;
    c->config.credential = credential;
    c->config.resume_token = resume_token;
    ok_or_raise(c->config.validate());
    c->session = std::make_unique<ClientSession>(c->config, at(now));
    return c;
}

std::unique_ptr<PyServer> make_server(std::int64_t now, std::uint64_t number, double interval, double timeout,
                                      bool server_pings, bool websocket) {
    auto s = std::make_unique<PyServer>();
    s->config.heartbeat = seconds(interval);
    s->config.timeout = seconds(timeout);
    s->config.min_interval = std::min(s->config.min_interval, s->config.heartbeat);
    s->config.server_pings = server_pings;
    s->config.websocket = websocket;
    ok_or_raise(s->config.validate());
    s->session = std::make_unique<ServerSession>(s->config, number, at(now));
    return s;
}


// `lifeline sysctl` for Python: the host's settings (this network namespace),
// what they imply, and, with a target, the advice `lifeline sysctl advise` gives.
py::dict sysctl_dict(double target, std::optional<double> nat_timeout) {
    const TcpKernelSettings k = value_or_raise(net::read_tcp_kernel_settings());
    py::dict d;
    d["keepalive_time"] = as_seconds(k.keepalive_time);
    d["keepalive_intvl"] = as_seconds(k.keepalive_intvl);
    d["keepalive_probes"] = k.keepalive_probes;
    d["retries2"] = k.retries2;
    d["syn_retries"] = k.syn_retries;
    d["idle_peer_detection"] = as_seconds(idle_peer_detection(k));
    d["retransmission_give_up"] = as_seconds(retransmission_give_up(k.retries2));
    d["connect_give_up"] = as_seconds(connect_give_up(k.syn_retries));
    if (target > 0) {
        std::optional<Duration> nat;
        if (nat_timeout) nat = seconds(*nat_timeout);
        const KeepaliveAdvice a = value_or_raise(advise_keepalive(seconds(target), nat));
        py::dict advice;
        advice["idle"] = as_seconds(a.policy.idle);
        advice["interval"] = as_seconds(a.policy.interval);
        advice["count"] = a.policy.count;
        advice["worst_case"] = as_seconds(a.worst_case);
        advice["probes_per_hour"] = a.probes_per_hour;
        advice["retries2_within_target"] = a.retries2_within_target;
        advice["notes"] = a.notes;
        d["advice"] = advice;
    }
    return d;
}

// `lifeline inspect` for Python: the host's TCP connections with the kernel's
// verdict. Owners (and their sockets' real options) only for root.
py::list inspect_list(std::optional<int> port, bool established_only) {
    net::DiagFilter filter;
    if (port) filter.any_port = static_cast<std::uint16_t>(*port);
    if (established_only) filter.states = 1u << static_cast<int>(sys::TcpState::established);
    const TcpKernelSettings k = value_or_raise(net::read_tcp_kernel_settings());
    py::list out;
    for (const net::DiagSocket& s : value_or_raise(net::dump_tcp_sockets(filter))) {
        const net::KeepaliveView view = net::keepalive_view(s, std::nullopt, k);
        const net::HealthAssessment health = net::assess(s, view, k);
        py::dict d;
        d["local"] = s.local.to_string();
        d["remote"] = s.remote.to_string();
        d["state"] = std::string(sys::to_string(s.state));
        d["verdict"] = std::string(net::to_string(health.verdict));
        d["time_left"] = as_seconds(health.time_left);
        d["time_left_estimated"] = health.time_left_estimated;
        d["keepalive"] = keepalive_dict(view.values);
        d["keepalive_inferred"] = view.inferred;
        d["send_queue"] = s.send_queue;
        d["receive_queue"] = s.receive_queue;
        if (s.info) d["tcp_info"] = tcp_info_dict(*s.info);
        out.append(d);
    }
    return out;
}

}  // namespace

PYBIND11_MODULE(_lifeline, m) {
    m.doc() = "lifeline's engine and socket helpers (C++). Use the `lifeline` package, not this module.";
    g_error_type = new py::object(py::module_::import("lifeline._errors").attr("LifelineError"));

    m.def(
        "apply_keepalive",
        [](const py::object& sock, double idle, double interval, int count, py::object user_timeout) {
            KeepalivePolicy p;
            p.idle = seconds(idle);
            p.interval = seconds(interval);
            p.count = count;
            if (user_timeout.is_none()) {
                p.user_timeout = UserTimeout::automatic();
            } else if (user_timeout.cast<double>() == 0.0) {
                p.user_timeout = UserTimeout::off();
            } else {
                p.user_timeout = UserTimeout::fixed(seconds(user_timeout.cast<double>()));
            }
            return keepalive_dict(value_or_raise(sys::apply_keepalive(fd_of(sock), p)));
        },
        py::arg("sock"), py::arg("idle"), py::arg("interval"), py::arg("count"), py::arg("user_timeout") = py::none());
    m.def(
        "apply_user_timeout",
        [](const py::object& sock, double timeout) {
            return as_seconds(value_or_raise(sys::apply_user_timeout(fd_of(sock), seconds(timeout))));
        },
        py::arg("sock"), py::arg("seconds"));
    m.def(
        "read_keepalive", [](const py::object& sock) { return keepalive_dict(value_or_raise(sys::read_keepalive(fd_of(sock)))); },
        py::arg("sock"));
    m.def(
        "tcp_info", [](const py::object& sock) { return tcp_info_dict(value_or_raise(sys::read_tcp_info(fd_of(sock)))); },
        py::arg("sock"));
    m.def(
        "policy_for",
        [](double detect_within) {
            const DetectionPlan plan = value_or_raise(policy_for_budget(seconds(detect_within)));
            py::dict d;
            d["heartbeat_interval"] = as_seconds(plan.heartbeat_interval);
            d["heartbeat_timeout"] = as_seconds(plan.heartbeat_timeout);
            d["keepalive_idle"] = as_seconds(plan.keepalive.idle);
            d["keepalive_interval"] = as_seconds(plan.keepalive.interval);
            d["keepalive_count"] = plan.keepalive.count;
            d["user_timeout"] = as_seconds(plan.keepalive.user_timeout_value());
            d["explanation"] = plan.explanation;
            return d;
        },
        py::arg("detect_within"));

    m.def("sysctl", &sysctl_dict, py::arg("target") = 0.0, py::arg("nat_timeout") = py::none());
    m.def("inspect", &inspect_list, py::arg("port") = py::none(), py::arg("established_only") = true);

    py::class_<PyClient>(m, "ClientSession")
        .def(py::init(&make_client), py::arg("now"), py::arg("interval") = 1.0, py::arg("timeout") = 3.0,
             py::arg("id") = "", py::arg("credential") = py::bytes(), py::arg("resume_token") = py::bytes())
        .def("receive", &PyClient::receive, py::arg("data"), py::arg("now"))
        .def("handle_timeout", [](PyClient& c, std::int64_t now) { c.session->handle_timeout(at(now)); })
        .def("send", &PyClient::send, py::arg("payload"))
        .def("close", [](PyClient& c) { c.session->close(CloseCode::normal, "bye", DisconnectReason::local_close); })
        .def("abort",
             [](PyClient& c, const std::string& why) { c.session->abort(DisconnectReason::peer_closed, why); })
        .def("poll_transmit", &PyClient::poll_transmit)
        .def("poll_event", &PyClient::poll_event)
        .def("next_timeout", &PyClient::next_timeout)
        .def_property_readonly("granted_id", [](const PyClient& c) { return c.session->granted_id(); })
        .def_property_readonly("resume_token",
                               [](const PyClient& c) { return py::bytes(c.session->resume_token()); })
        .def_property_readonly("open",
                               [](const PyClient& c) { return c.session->state() == ClientSession::State::open; });

    py::class_<PyServer>(m, "ServerSession")
        .def(py::init(&make_server), py::arg("now"), py::arg("number") = 1, py::arg("interval") = 1.0,
             py::arg("timeout") = 3.0, py::arg("server_pings") = false, py::arg("websocket") = false)
        .def("receive", &PyServer::receive, py::arg("data"), py::arg("now"))
        .def("handle_timeout", [](PyServer& s, std::int64_t now) { s.session->handle_timeout(at(now)); })
        .def("send", &PyServer::send, py::arg("payload"))
        .def("poll_transmit", &PyServer::poll_transmit)
        .def("poll_event", &PyServer::poll_event)
        .def("next_timeout", &PyServer::next_timeout)
        .def_property_readonly("client_id", [](const PyServer& s) { return s.session->client_id(); });
}
