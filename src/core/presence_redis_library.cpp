// The Redis Functions library `lifeline` (Redis >= 7: FUNCTION LOAD REPLACE on
// every master), the fencing rules of fleet presence, run atomically inside
// Redis. See docs/PROTOCOL.md ("Fleet presence on Redis") for the keys and the
// stream. The same library serves one redis-server and a Redis Cluster.
//
// Every record lives under the id's hash tag, so one id's keys share a slot:
//   lifeline:{ID}         hash: epoch online gateway conn run peer since reason detected_after_ms
//   lifeline:{ID}:epoch   the id's epoch counter; never expires, so an epoch is
//                         never reused and a late write from an old one can never
//                         match a newer session.
//   lifeline:{ID}:outbox  the id's events the stream does not have yet (only
//                         when the stream is on another cluster node).
// A live record's TTL is twice the gateway's: a dead gateway's sessions are
// ended by a survivor (reap) one TTL after its heartbeat stops, with the
// record's peer still there; the record's own expiry is the backstop when no
// gateway survives.
// Per gateway G (tag {G}): lifeline:gateway:{G} (its heartbeat, PX ttl),
// lifeline:sessions:{G} (id -> "RUN CONN" of its sessions, written before each
// admission so a survivor can always find them), and lifeline:control:G
// (channel: "ID EPOCH" to close a ghost). lifeline:gateways: G -> last heartbeat.
//
// The stream: every event of an id has a sequence number, 2*epoch for its
// online and 2*epoch+1 for its offline, and `SEEN_PREFIX..ID` (on the stream's
// slot; only for ids whose events went through an outbox) holds the last one
// the stream has. An event is appended only past it: exactly once, and in
// epoch order per id, whoever carries it. A function
// appends an id's events itself when the stream's slot is on its node (always
// with one redis-server); otherwise they wait in the id's outbox, in order, and
// the function returns the outbox for the gateway to carry (lifeline_emit) and
// then clear (lifeline_ack). An event is in the outbox atomically with the
// write it reports, so a gateway dying in between loses nothing: the next
// writer of the id, or the survivor that reaps it, carries it.
//
// Functions that touch many ids (refresh, restore, reap_ids, ack) declare no
// keys and are sent to the node that holds all of them (allow-cross-slot-keys).
#include "core/presence_redis_library.hpp"

namespace lifeline::presence_redis {

std::string_view library_source() {
    return R"lua(#!lua name=lifeline
local function rec_key(id) return 'lifeline:{' .. id .. '}' end
local function epoch_key(id) return 'lifeline:{' .. id .. '}:epoch' end
local function outbox_key(id) return 'lifeline:{' .. id .. '}:outbox' end

-- The id's current epoch. A key missing, or below EPOCH, means Redis lost
-- data (restarted empty, or from an older snapshot): the epoch a gateway
-- still holds is then raised into it, so a number is never handed out twice.
local function current_epoch(id, epoch)
  local current = redis.call('GET', epoch_key(id))
  if current == false or tonumber(current) < tonumber(epoch) then
    redis.call('SET', epoch_key(id), epoch)
    return epoch
  end
  return current
end

-- S: the stream's settings {stream, seen prefix, maxlen, retention}.
local function stream_of(args, at)
  return {name = args[at], seen = args[at + 1], maxlen = args[at + 2], retention = args[at + 3]}
end

-- Appends event SEQ of ID unless the stream has it. The last sequence number
-- is kept (`seen`) only for ids whose events have travelled through an
-- outbox (REMEMBER), the only ones a late carrier can bring again; an id
-- whose events are always appended in place needs none.
-- -> 1 appended, 0 the stream had it, nil the stream's slot is not here (migrating)
local function append_fields(s, id, seq, fields, remember)
  local seen = s.seen .. id
  local last = redis.pcall('GET', seen)
  if type(last) == 'table' and last.err then return nil end
  if last and seq <= tonumber(last) then return 0 end
  local added = redis.pcall('XADD', s.name, 'MAXLEN', '~', s.maxlen, '*', unpack(fields))
  if type(added) == 'table' and added.err then return nil end
  if last or remember then redis.call('SET', seen, seq, 'PX', s.retention) end
  return 1
end

-- A carried event, encoded {seq, id, fields}.
local function append(s, event)
  local e = cjson.decode(event)
  return append_fields(s, e[2], e[1], e[3], true)
end

local function to_outbox(s, id, seq, fields)
  local box = outbox_key(id)
  redis.call('RPUSH', box, cjson.encode({seq, id, fields}))
  redis.call('PEXPIRE', box, s.retention)
end

-- Hands an event of ID to the stream: appended here, after the outbox, when
-- the stream is on this node; else (or if any append fails: a slot being
-- migrated) added to the outbox for a gateway to carry. Never raises after
-- the caller's writes, so no write is ever left without its event.
local function publish(s, id, seq, fields)
  local box = outbox_key(id)
  if redis.call('EXISTS', box) == 1 then
    for _, queued in ipairs(redis.call('LRANGE', box, 0, -1)) do
      if append(s, queued) == nil then return to_outbox(s, id, seq, fields) end  -- Appended ones are seen.
    end
    redis.call('DEL', box)
  end
  if append_fields(s, id, seq, fields, false) == nil then to_outbox(s, id, seq, fields) end
end

local function outbox(id) return redis.call('LRANGE', outbox_key(id), 0, -1) end

-- Offline, once: only while EPOCH is the id's current epoch and the record
-- does not already say that epoch went offline.
local function go_offline(s, id, epoch, reason, after, gw, peer, now)
  if current_epoch(id, epoch) ~= epoch then return 0 end
  local rec = rec_key(id)
  local st = redis.call('HMGET', rec, 'epoch', 'online', 'peer', 'conn')
  if st[1] == epoch and st[2] == '0' then return 0 end
  if peer == '' then peer = st[3] or '' end
  redis.call('HSET', rec, 'epoch', epoch, 'online', '0', 'gateway', gw, 'conn', st[4] or '0', 'peer', peer,
             'since', now, 'reason', reason, 'detected_after_ms', after)
  redis.call('PEXPIRE', rec, s.retention)
  publish(s, id, 2 * tonumber(epoch) + 1, {'event', 'offline', 'id', id, 'epoch', epoch, 'reason', reason,
                                           'detected_after_ms', after, 'gateway', gw, 'peer', peer, 'time', now})
  return 1
end

-- KEYS: the id's record, epoch, admissions, outbox.
-- ARGV: id gateway conn peer now ttl run, then the stream's settings.
-- -> {epoch, replaced gateway, replaced epoch, 1 if this admission was superseded, outbox}
-- The admissions hash (gateway run conn -> epoch, recent ones only) makes a resent online (its
-- reply lost with the connection) a no-op: it gets its first epoch back, and
-- learns whether another session took the id since.
local function online(keys, args)
  local rec, adm = keys[1], keys[3]
  local id, gw, conn, peer, now, ttl, run = unpack(args, 1, 7)
  local s = stream_of(args, 8)
  local token = gw .. ' ' .. run .. ' ' .. conn
  local prior = redis.call('HGET', adm, token)
  local st = redis.call('HMGET', rec, 'epoch', 'online', 'gateway', 'conn', 'peer')
  if prior then
    local superseded = (st[1] == prior and st[2] == '1') and 0 or 1
    return {tonumber(prior), '', 0, superseded, outbox(id)}
  end
  local epoch = redis.call('INCR', keys[2])
  local old_gw, old_epoch = '', 0
  if st[2] == '1' and st[1] then
    old_gw, old_epoch = st[3], tonumber(st[1])
    publish(s, id, 2 * old_epoch + 1, {'event', 'offline', 'id', id, 'epoch', st[1], 'reason', 'session_replaced',
                                       'detected_after_ms', '0', 'gateway', old_gw, 'peer', st[5] or '', 'time', now})
    redis.call('PUBLISH', 'lifeline:control:' .. old_gw, id .. ' ' .. st[1])
  end
  redis.call('HSET', rec, 'epoch', epoch, 'online', '1', 'gateway', gw, 'conn', conn, 'run', run, 'peer', peer,
             'since', now)
  redis.call('PEXPIRE', rec, 2 * tonumber(ttl))
  if redis.call('HLEN', adm) >= 16 then redis.call('DEL', adm) end  -- Only recent ones are ever resent.
  redis.call('HSET', adm, token, epoch)
  redis.call('PEXPIRE', adm, 2 * tonumber(ttl))
  publish(s, id, 2 * epoch, {'event', 'online', 'id', id, 'epoch', tostring(epoch), 'gateway', gw, 'peer', peer,
                             'time', now})
  return {epoch, old_gw, old_epoch, 0, outbox(id)}
end

-- KEYS: the id's record, epoch, outbox.
-- ARGV: id epoch reason detected_after_ms gateway peer now, then the stream's settings.
-- -> {1 applied or 0 fenced out, outbox}
local function offline(keys, args)
  local id, epoch, reason, after, gw, peer, now = unpack(args, 1, 7)
  local s = stream_of(args, 8)
  return {go_offline(s, id, epoch, reason, after, gw, peer, now), outbox(id)}
end

-- Keeps this gateway's live entries alive. ARGV: gateway ttl then (id epoch)*.
-- -> {the 1-based entries fenced out, the entries whose record is gone}
local function refresh(keys, args)
  local gw, ttl = args[1], args[2]
  local lost, missing = {}, {}
  local n = 0
  for i = 3, #args, 2 do
    n = n + 1
    local rec, epoch = rec_key(args[i]), args[i + 1]
    local st = redis.call('HMGET', rec, 'epoch', 'online', 'gateway')
    if st[1] == epoch and st[2] == '1' and st[3] == gw then
      redis.call('PEXPIRE', rec, 2 * tonumber(ttl))
    elseif st[1] == epoch then
      lost[#lost + 1] = n  -- This epoch went offline meanwhile (reaped).
    else
      missing[#missing + 1] = n  -- Expired or never written: the gateway sends it whole (restore).
    end
  end
  return {lost, missing}
end

-- Re-creates records that expired while Redis was unreachable (or were lost
-- with its data), fenced: only at the id's current epoch, and never one whose
-- epoch went offline meanwhile.
-- ARGV: gateway ttl run then (id epoch conn peer since)*. -> the 1-based entries fenced out
local function restore(keys, args)
  local gw, ttl, run = args[1], args[2], args[3]
  local lost = {}
  local n = 0
  for i = 4, #args, 5 do
    n = n + 1
    local id, epoch, conn, peer, since = args[i], args[i + 1], args[i + 2], args[i + 3], args[i + 4]
    local rec = rec_key(id)
    local current = current_epoch(id, epoch)
    local st = redis.call('HMGET', rec, 'epoch', 'online')
    if current ~= epoch or (st[1] == epoch and st[2] == '0') then
      lost[#lost + 1] = n
    else
      redis.call('HSET', rec, 'epoch', epoch, 'online', '1', 'gateway', gw, 'conn', conn, 'run', run, 'peer', peer,
                 'since', since)
      redis.call('PEXPIRE', rec, 2 * tonumber(ttl))
    end
  end
  return lost
end

-- The next sessions of a gateway whose heartbeat key expired (or, with FORCE,
-- of this gateway's previous run) to end, at most LIMIT. KEYS: its heartbeat
-- key, the sessions to end, its live sessions. With RENAME (a gateway's first
-- call at start), the previous run's sessions are first moved aside, so that
-- this run's new ones are never among them.
-- A reap that waited in a socket while Redis was paused (SIGSTOP, swap) is
-- stale: the gateway it condemns may only have been unable to reach Redis
-- too. It is skipped if Redis' clock is more than STALE_MS past its sending.
-- Moving aside takes only entries of other runs than RUN (so it can be done
-- again after a lost reply) and adds them to what is already aside.
-- ARGV: now limit force stale_ms rename run. -> {-1 alive | -2 stale | sessions left, then (id token)*}
local function reap_list(keys, args)
  local now, limit, force, stale, rename, run = unpack(args)
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(now) > tonumber(stale) then return {-2} end
  if force ~= '1' and redis.call('EXISTS', keys[1]) == 1 then return {-1} end
  if rename == '1' then
    local live = redis.call('HGETALL', keys[3])
    for i = 1, #live, 2 do
      if string.match(live[i + 1], '^%S+') ~= run then
        redis.call('HSET', keys[2], live[i], live[i + 1])
        redis.call('HDEL', keys[3], live[i])
      end
    end
  end
  local out = {redis.call('HLEN', keys[2])}
  for _, v in ipairs(redis.call('HRANDFIELD', keys[2], tonumber(limit), 'WITHVALUES')) do out[#out + 1] = v end
  return out
end

-- Ends the listed sessions of gateway G with gateway_lost: each only if its
-- record still says a session of that run of G is online. (Not the listed
-- conn: a newer session of the id on G is listed before Redis admits it, and
-- G may die in between; every session of a dead run is dead.)
-- ARGV: gateway now after, the stream's settings, then (id token)*. -> {ended, the ids' outboxes...}
local function reap_ids(keys, args)
  local gw, now, after = args[1], args[2], args[3]
  local s = stream_of(args, 4)
  local out = {0}
  for i = 8, #args, 2 do
    local id, token = args[i], args[i + 1]
    local st = redis.call('HMGET', rec_key(id), 'online', 'gateway', 'run', 'epoch')
    if st[1] == '1' and st[2] == gw and st[3] == string.match(token, '^%S+') then
      out[1] = out[1] + go_offline(s, id, st[4], 'gateway_lost', after, gw, '', now)
    end
    for _, e in ipairs(outbox(id)) do out[#out + 1] = e end
  end
  return out
end

-- KEYS: a gateway's sessions. ARGV: (id token)*: each removed if still that session.
local function unindex(keys, args)
  for i = 1, #args, 2 do
    if redis.call('HGET', keys[1], args[i]) == args[i + 1] then redis.call('HDEL', keys[1], args[i]) end
  end
  return 1
end

-- Carries outbox events to the stream. KEYS: the stream. ARGV: the stream's settings, then events.
-- -> (id seq)* of every event the stream now has, for lifeline_ack.
local function emit(keys, args)
  local s = stream_of(args, 1)
  local out = {}
  for i = 5, #args do
    append(s, args[i])
    local e = cjson.decode(args[i])
    out[#out + 1] = e[2]
    out[#out + 1] = e[1]
  end
  return out
end

-- Clears carried events from outboxes. ARGV: (id seq)*: each outbox loses its events up to SEQ.
local function ack(keys, args)
  for i = 1, #args, 2 do
    local box = outbox_key(args[i])
    local seq = tonumber(args[i + 1])
    while true do
      local head = redis.call('LINDEX', box, 0)
      if not head or cjson.decode(head)[1] > seq then break end
      redis.call('LPOP', box)
    end
  end
  return 1
end

local many = {'allow-cross-slot-keys'}
redis.register_function{function_name = 'lifeline_online', callback = online, flags = many}
redis.register_function{function_name = 'lifeline_offline', callback = offline, flags = many}
redis.register_function{function_name = 'lifeline_refresh', callback = refresh, flags = many}
redis.register_function{function_name = 'lifeline_restore', callback = restore, flags = many}
redis.register_function('lifeline_reap_list', reap_list)
redis.register_function{function_name = 'lifeline_reap_ids', callback = reap_ids, flags = many}
redis.register_function('lifeline_unindex', unindex)
redis.register_function('lifeline_emit', emit)
redis.register_function{function_name = 'lifeline_ack', callback = ack, flags = many}
)lua";
}

}  // namespace lifeline::presence_redis
