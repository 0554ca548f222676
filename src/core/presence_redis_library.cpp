// The Redis Functions library `lifeline` (Redis >= 7: FUNCTION LOAD REPLACE),
// the fencing rules of fleet presence, run atomically inside Redis. See
// docs/PROTOCOL.md ("Fleet presence on Redis") for the keys and the stream.
//
// Every record lives under the id's hash tag, so one id's keys share a slot:
//   lifeline:{ID}        hash: epoch online gateway conn peer since reason detected_after_ms
//   lifeline:{ID}:epoch  the id's epoch counter; never expires, so an epoch is
//                        never reused and a late write from an old one can never
//                        match a newer session.
// A live record's TTL is twice the gateway's: a dead gateway's sessions are
// ended by a survivor (reap) one TTL after its heartbeat stops, with the
// record's peer still there; the record's own expiry is the backstop when no
// gateway survives.
// Per gateway: lifeline:gateway:{G} (its heartbeat, PX ttl), lifeline:sessions:{G}
// (id -> epoch of its live sessions), lifeline:control:G (channel: "ID EPOCH"
// to close a ghost), and the hash lifeline:gateways (G -> last heartbeat, ms).
#include "core/presence_redis_library.hpp"

namespace lifeline::presence_redis {

std::string_view library_source() {
    return R"lua(#!lua name=lifeline
local function rec_key(id) return 'lifeline:{' .. id .. '}' end
local function epoch_key(id) return 'lifeline:{' .. id .. '}:epoch' end
local function sessions_key(gw) return 'lifeline:sessions:{' .. gw .. '}' end

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

local function xadd(stream, maxlen, fields)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(fields))
end

-- Offline, once: only while EPOCH is the id's current epoch and the record
-- does not already say that epoch went offline.
-- No epoch key at all means Redis lost its data (restarted empty): the
-- gateway's word is then the truth.
local function go_offline(id, epoch, reason, after, gw, peer, now, retention, stream, maxlen)
  if current_epoch(id, epoch) ~= epoch then return 0 end
  local rec = rec_key(id)
  local st = redis.call('HMGET', rec, 'epoch', 'online', 'peer', 'conn')
  if st[1] == epoch and st[2] == '0' then return 0 end
  if peer == '' then peer = st[3] or '' end
  redis.call('HSET', rec, 'epoch', epoch, 'online', '0', 'gateway', gw, 'conn', st[4] or '0', 'peer', peer,
             'since', now, 'reason', reason, 'detected_after_ms', after)
  redis.call('PEXPIRE', rec, retention)
  xadd(stream, maxlen, {'event', 'offline', 'id', id, 'epoch', epoch, 'reason', reason,
                        'detected_after_ms', after, 'gateway', gw, 'peer', peer, 'time', now})
  return 1
end

-- KEYS: record, epoch key, stream, this gateway's sessions, the id's admissions.
-- ARGV: id gateway conn peer now ttl maxlen run.
-- -> {epoch, replaced gateway, replaced epoch, 1 if this admission was superseded}
-- The admissions hash (gateway run conn -> epoch, recent ones only) makes a resent online (its
-- reply lost with the connection) a no-op: it gets its first epoch back, and
-- learns whether another session took the id since.
local function online(keys, args)
  local rec, stream, mine, adm = keys[1], keys[3], keys[4], keys[5]
  local id, gw, conn, peer, now, ttl, maxlen, run = unpack(args)
  local token = gw .. ' ' .. run .. ' ' .. conn
  local prior = redis.call('HGET', adm, token)
  local st = redis.call('HMGET', rec, 'epoch', 'online', 'gateway', 'conn', 'peer')
  if prior then
    if st[1] == prior and st[2] == '1' then return {tonumber(prior), '', 0, 0} end
    return {tonumber(prior), '', 0, 1}
  end
  local epoch = redis.call('INCR', keys[2])
  local old_gw, old_epoch = '', 0
  if st[2] == '1' and st[1] then
    old_gw, old_epoch = st[3], tonumber(st[1])
    xadd(stream, maxlen, {'event', 'offline', 'id', id, 'epoch', st[1], 'reason', 'session_replaced',
                          'detected_after_ms', '0', 'gateway', old_gw, 'peer', st[5] or '', 'time', now})
    redis.call('HDEL', sessions_key(old_gw), id)
    redis.call('PUBLISH', 'lifeline:control:' .. old_gw, id .. ' ' .. st[1])
  end
  redis.call('HSET', rec, 'epoch', epoch, 'online', '1', 'gateway', gw, 'conn', conn, 'peer', peer, 'since', now)
  redis.call('PEXPIRE', rec, 2 * tonumber(ttl))
  if redis.call('HLEN', adm) >= 16 then redis.call('DEL', adm) end  -- Only recent ones are ever resent.
  redis.call('HSET', adm, token, epoch)
  redis.call('PEXPIRE', adm, 2 * tonumber(ttl))
  redis.call('HSET', mine, id, epoch)
  xadd(stream, maxlen, {'event', 'online', 'id', id, 'epoch', tostring(epoch), 'gateway', gw, 'peer', peer,
                        'time', now})
  return {epoch, old_gw, old_epoch, 0}
end

-- KEYS: this gateway's sessions, stream.
-- ARGV: id epoch reason detected_after_ms gateway peer now retention maxlen. -> 1 applied, 0 fenced out
local function offline(keys, args)
  local id, epoch, reason, after, gw, peer, now, retention, maxlen = unpack(args)
  if redis.call('HGET', keys[1], id) == epoch then redis.call('HDEL', keys[1], id) end
  return go_offline(id, epoch, reason, after, gw, peer, now, retention, keys[2], maxlen)
end

-- Keeps this gateway's live entries alive: two calls per entry. KEYS: this
-- gateway's sessions. ARGV: gateway ttl then (id epoch)*.
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
-- epoch went offline meanwhile. KEYS: this gateway's sessions.
-- ARGV: gateway ttl then (id epoch conn peer since)*. -> the 1-based entries fenced out
local function restore(keys, args)
  local gw, ttl = args[1], args[2]
  local lost = {}
  local n = 0
  for i = 3, #args, 5 do
    n = n + 1
    local id, epoch, conn, peer, since = args[i], args[i + 1], args[i + 2], args[i + 3], args[i + 4]
    local rec = rec_key(id)
    local current = current_epoch(id, epoch)
    local st = redis.call('HMGET', rec, 'epoch', 'online')
    if current ~= epoch or (st[1] == epoch and st[2] == '0') then
      lost[#lost + 1] = n
    else
      redis.call('HSET', rec, 'epoch', epoch, 'online', '1', 'gateway', gw, 'conn', conn, 'peer', peer, 'since', since)
      redis.call('PEXPIRE', rec, 2 * tonumber(ttl))
      redis.call('HSET', keys[1], id, epoch)
    end
  end
  return lost
end

-- Ends the sessions of a gateway whose heartbeat key expired (or, with FORCE,
-- of this gateway's previous run), at most LIMIT per call, with reason
-- gateway_lost. KEYS: its heartbeat key, the sessions to end, lifeline:gateways,
-- stream, its live sessions. With RENAME (a gateway's first call at start),
-- the previous run's live sessions are first moved aside to be ended, so
-- that this run's new ones are never among them.
-- A reap that waited in a socket while Redis was paused (SIGSTOP, swap) is
-- stale: the gateway it condemns may only have been unable to reach Redis
-- too. It is skipped if Redis' clock is more than STALE_MS past its sending.
-- ARGV: gateway now retention maxlen limit force stale_ms rename.
-- -> {sessions left (-1: alive, -2: stale), ended}
local function reap(keys, args)
  local gw, now, retention, maxlen, limit, force, stale, rename = unpack(args)
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(now) > tonumber(stale) then
    return {-2, 0}
  end
  if force ~= '1' and redis.call('EXISTS', keys[1]) == 1 then return {-1, 0} end
  if rename == '1' and redis.call('EXISTS', keys[5]) == 1 then redis.call('RENAME', keys[5], keys[2]) end
  local last = tonumber(redis.call('HGET', keys[3], gw) or now)
  local after = tostring(math.max(0, tonumber(now) - last))
  local batch = redis.call('HRANDFIELD', keys[2], tonumber(limit), 'WITHVALUES')
  local ended = 0
  for i = 1, #batch, 2 do
    ended = ended + go_offline(batch[i], batch[i + 1], 'gateway_lost', after, gw, '', now, retention, keys[4], maxlen)
    redis.call('HDEL', keys[2], batch[i])
  end
  local left = redis.call('HLEN', keys[2])
  if left == 0 and force ~= '1' then redis.call('HDEL', keys[3], gw) end
  return {left, ended}
end

redis.register_function('lifeline_online', online)
redis.register_function('lifeline_offline', offline)
redis.register_function('lifeline_refresh', refresh)
redis.register_function('lifeline_restore', restore)
redis.register_function('lifeline_reap', reap)
)lua";
}

}  // namespace lifeline::presence_redis
