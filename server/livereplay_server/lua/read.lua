-- One atomic read of a session: its head, the page after a position, and whether
-- the next position is a hole. Events past the age limit are dropped first, so an
-- expired event is never served (as the in-memory store does).
--
-- KEYS: meta, stream, holes
-- ARGV: 1 after (position), 2 limit (0: head only), 3 max_bytes, 4 now_ms, 5 max_age_ms
-- Reply: nil for an unknown session, else {incarnation, tail, revision, bytes,
--        events retained, dropped by age, oldest position, oldest revision,
--        next_in_hole, restoring to (position or false), restore until (ms or false),
--        then (position, revision, ts, event JSON) per event}
local s = load(KEYS[1], KEYS[2], KEYS[3])
if not s then return false end
local aged = trim_age(s, tonumber(ARGV[4]), tonumber(ARGV[5]))

local restore = redis.call('HMGET', KEYS[1], 'rto', 'rtu')
local reply = {s.inc, s.tail, s.rev, s.bytes, s.count, aged, false, false, 0, restore[1],
               restore[2]}
local first = redis.call('XRANGE', s.stream, '-', '+', 'COUNT', 1)
if first[1] then
  reply[7] = entry_pos(first[1])
  reply[8] = field(first[1], 'r')
end

local after = ARGV[1]
local next_pos = incr(after)
for _, hole in ipairs(redis.call('LRANGE', s.holes, 0, -1)) do
  local sep = string.find(hole, ':', 1, true)
  if cmp(string.sub(hole, 1, sep - 1), next_pos) <= 0 and cmp(next_pos, hole_end(hole)) <= 0 then
    reply[9] = 1
    break
  end
end

local limit = tonumber(ARGV[2])
if limit > 0 and cmp(after, s.tail) < 0 then
  local max_bytes = tonumber(ARGV[3])
  local size = 0
  local entries = redis.call('XRANGE', s.stream, '(' .. after .. '-0', '+', 'COUNT', limit)
  for i, e in ipairs(entries) do
    local data = field(e, 'd')
    size = size + #data
    if i > 1 and size > max_bytes then break end
    reply[#reply + 1] = entry_pos(e)
    reply[#reply + 1] = field(e, 'r')
    reply[#reply + 1] = field(e, 't')
    reply[#reply + 1] = data
  end
end
return reply
