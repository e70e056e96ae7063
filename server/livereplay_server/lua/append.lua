-- Append one batch atomically (PROTOCOL.md section 5), mirroring SessionTable.append.
--
-- KEYS: meta, stream, holes, superseded, and the data set's instance key
-- ARGV: 1 mode ('w': writer-assigned positions, 'd': daemon-assigned),
--       2 incarnation, 3 expected incarnation ('d' only; '' = no session),
--       4 expected tail ('d' only), 5 now_ms, 6 max_events, 7 max_bytes,
--       8 max_age_ms, 9 max_event_bytes, 10 idle_ttl_ms, 11 channel,
--       12 max_superseded, 13 max_holes, 14 restore_to ('' when the batch does not
--       restore a writer's window), 15 restore_until_ms, 16 the data set the daemon
--       (and the writer) believe in (the instance key's value), then (position,
--       revision, event JSON) per event. The daemon encoded the JSON: with writer-assigned positions
--       nothing in it depends on the session's state; with daemon-assigned ones
--       it depends on the tail, so the script refuses a stale guess ('retry').
-- Reply: {'refused', code} | {'retry', incarnation, tail} | {'moved'} (the data set is
--        not the one expected: Redis lost it; nothing is written) |
--        {'ok', accepted, incarnation, tail, revision, created, took_over,
--         trimmed by events, by bytes, by age, positions skipped as a hole,
--         positions skipped since this log began}
local meta, stream, holes, superseded = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local mode, inc = ARGV[1], ARGV[2]
local now = tonumber(ARGV[5])
local n = (#ARGV - 16) / 3

-- A Redis that restarted empty must not take a writer's batch as if nothing happened:
-- the writer re-sends its whole window once it learns of the new data set.
if redis.call('GET', KEYS[5]) ~= ARGV[16] then
  return {'moved'}
end
if mode == 'w' and redis.call('LPOS', superseded, inc) then
  return {'refused', 'incarnation_superseded'}
end
local cur = redis.call('HMGET', meta, 'inc', 'tail', 'rev')
local cur_inc, cur_tail, cur_rev = cur[1], cur[2], cur[3]
if mode == 'd' and ((cur_inc or '') ~= ARGV[3] or (cur_inc and cur_tail ~= ARGV[4])) then
  return {'retry', cur_inc or '', cur_tail or '0'}
end
if n == 0 then
  return {'ok', 0, cur_inc or false, cur_tail or '0', cur_rev or '0', 0, 0, 0, 0, 0, '0',
          redis.call('HGET', meta, 'skipped') or '0'}
end

-- Stage: which events are new, checked whole before anything is written.
local fresh = (not cur_inc) or cur_inc ~= inc
local tail = '0'
if not fresh then tail = cur_tail end
local max_event_bytes = tonumber(ARGV[9])
local new = {}
for i = 0, n - 1 do
  local pos = ARGV[17 + 3 * i]
  if cmp(pos, tail) > 0 then
    if #ARGV[19 + 3 * i] > max_event_bytes then
      return {'refused', 'event_too_large'}
    end
    new[i] = true
    tail = pos
  end
end

-- Write: a new session, or a new incarnation taking over with a fresh log.
local created, took_over = 0, 0
local s
if fresh then
  if cur_inc then
    redis.call('RPUSH', superseded, cur_inc)
    redis.call('LTRIM', superseded, -tonumber(ARGV[12]), -1)
    took_over = 1
  else
    created = 1
  end
  redis.call('DEL', stream, holes)
  redis.call('HSET', meta, 'inc', inc, 'tail', '0', 'rev', '0', 'bytes', 0)
  redis.call('HDEL', meta, 'rto', 'rtu', 'skipped')
  s = {meta = meta, stream = stream, holes = holes, inc = inc, tail = '0', rev = '0',
       bytes = 0, count = 0}
else
  s = load(meta, stream, holes)
end

local max_holes = tonumber(ARGV[13])
local accepted, skipped = 0, 0
-- What readers' daemons are told: the new events themselves, so a live reader never
-- reads Redis (redis_live.py). 'n' starts a new log (a new session or a takeover).
local kind = 'a'
if fresh then kind = 'n' end
local told = {kind, ' ', inc, '\n'}
for i = 0, n - 1 do
  if new[i] then
    local pos, rev, data = ARGV[17 + 3 * i], ARGV[18 + 3 * i], ARGV[19 + 3 * i]
    told[#told + 1] = pos .. ' ' .. rev .. ' ' .. ARGV[5] .. ' ' .. #data .. '\n'
    told[#told + 1] = data
    if s.tail ~= '0' and cmp(pos, incr(s.tail)) > 0 then
      skipped = skipped + (tonumber(pos) - tonumber(s.tail) - 1)
      redis.call('RPUSH', holes, incr(s.tail) .. ':' .. decr(pos))
      redis.call('LTRIM', holes, -max_holes, -1)
    end
    redis.call('XADD', stream, pos .. '-0', 'd', data, 't', ARGV[5], 'r', rev)
    s.bytes = s.bytes + #data
    s.count = s.count + 1
    s.tail = pos
    s.rev = rev
    accepted = accepted + 1
  end
end

local by_events, by_bytes, by_age = 0, 0, 0
if accepted > 0 or fresh then
  redis.call('HSET', meta, 'tail', s.tail, 'rev', s.rev, 'bytes', s.bytes)
  by_events, by_bytes, by_age = enforce(s, tonumber(ARGV[6]), tonumber(ARGV[7]), now,
                                        tonumber(ARGV[8]))
  -- Idle expiry: every key of the session lives idle_ttl past its last append.
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[10]) end
  redis.call('PUBLISH', ARGV[11], table.concat(told))
end

-- A writer restoring its window: readers ahead of the tail wait until it gets there
-- (or until the deadline, which every restore batch moves on).
local restore_to, restoring = ARGV[14], redis.call('HGET', meta, 'rto')
if restore_to ~= '' and cmp(s.tail, restore_to) < 0 then
  if not restoring or cmp(restore_to, restoring) > 0 then restoring = restore_to end
  redis.call('HSET', meta, 'rto', restoring, 'rtu', ARGV[15])
elseif restoring and cmp(s.tail, restoring) >= 0 then
  redis.call('HDEL', meta, 'rto', 'rtu')
end
-- Positions skipped since this log began: a writer whose ack was lost learns of the
-- holes that ack reported from the next one.
-- It saturates at 2^53, where a Lua number stops being exact (holes can span 2^64).
local skipped_total = tonumber(redis.call('HGET', meta, 'skipped') or '0') + skipped
if skipped_total > 9007199254740992 then skipped_total = 9007199254740992 end
skipped_total = string.format('%.0f', skipped_total)
if skipped > 0 then redis.call('HSET', meta, 'skipped', skipped_total) end
return {'ok', accepted, s.inc, s.tail, s.rev, created, took_over, by_events, by_bytes, by_age,
        string.format('%.0f', skipped), skipped_total}
