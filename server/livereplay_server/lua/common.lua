-- Helpers prepended to every livereplay script.
--
-- Positions are unsigned 64-bit integers. Lua numbers are doubles (exact only
-- up to 2^53), so positions travel and are compared as decimal strings without
-- leading zeros; stream entry IDs are "<position>-0".

local function cmp(a, b)
  if #a ~= #b then
    if #a < #b then return -1 end
    return 1
  end
  if a == b then return 0 end
  if a < b then return -1 end
  return 1
end

local function incr(a)
  local i = #a
  while i > 0 and string.byte(a, i) == 57 do i = i - 1 end -- trailing '9's
  if i == 0 then return '1' .. string.rep('0', #a) end
  return string.sub(a, 1, i - 1) .. string.char(string.byte(a, i) + 1) .. string.rep('0', #a - i)
end

local function decr(a) -- a >= 1
  local i = #a
  while string.byte(a, i) == 48 do i = i - 1 end -- trailing '0's
  local s = string.sub(a, 1, i - 1) .. string.char(string.byte(a, i) - 1) .. string.rep('9', #a - i)
  s = string.gsub(s, '^0+', '')
  if s == '' then return '0' end
  return s
end

-- An XRANGE entry is {id, {field, value, ...}}.
local function field(entry, name)
  local f = entry[2]
  for i = 1, #f, 2 do
    if f[i] == name then return f[i + 1] end
  end
  return nil
end

local function entry_pos(entry)
  return string.sub(entry[1], 1, -3)
end

local function hole_end(hole)
  return string.sub(hole, string.find(hole, ':', 1, true) + 1)
end

-- The session as the scripts see it; nil when the session is unknown.
local function load(meta, stream, holes)
  local h = redis.call('HMGET', meta, 'inc', 'tail', 'rev', 'bytes')
  if not h[1] then return nil end
  return {
    meta = meta, stream = stream, holes = holes,
    inc = h[1], tail = h[2], rev = h[3], bytes = tonumber(h[4]),
    count = redis.call('XLEN', stream),
  }
end

-- A hole is forgotten once it ends more than one position below the oldest retained
-- event: a cursor just before the hole then reads a trimmed window, not the hole.
local function prune_holes(s)
  local first = redis.call('XRANGE', s.stream, '-', '+', 'COUNT', 1)
  local oldest = incr(s.tail)
  if first[1] then oldest = entry_pos(first[1]) end
  while true do
    local hole = redis.call('LINDEX', s.holes, 0)
    if not hole or cmp(incr(hole_end(hole)), oldest) >= 0 then break end
    redis.call('LPOP', s.holes)
  end
end

-- Drop the oldest entries while `keep_going(entry)` holds; exact, oldest first.
local function drop_while(s, keep_going, batch)
  local dropped, last = 0, nil
  while true do
    local start = '-'
    if last then start = '(' .. last .. '-0' end
    local entries = redis.call('XRANGE', s.stream, start, '+', 'COUNT', batch)
    local stopped = false
    for i = 1, #entries do
      local e = entries[i]
      if not keep_going(e) then
        stopped = true
        break
      end
      s.bytes = s.bytes - #field(e, 'd')
      s.count = s.count - 1
      dropped = dropped + 1
      last = entry_pos(e)
    end
    if stopped or #entries < batch then break end
    batch = math.min(batch * 2, 256)
  end
  if last then
    if last == s.tail then
      redis.call('XTRIM', s.stream, 'MAXLEN', '=', 0)
    else
      redis.call('XTRIM', s.stream, 'MINID', '=', incr(last) .. '-0')
    end
    redis.call('HSET', s.meta, 'bytes', s.bytes)
    prune_holes(s)
  end
  return dropped
end

local function trim_age(s, now, max_age)
  local horizon = now - max_age
  return drop_while(s, function(e) return tonumber(field(e, 't')) <= horizon end, 1)
end

-- Per-session retention, in the order of the in-memory log: events, bytes, age.
local function enforce(s, max_events, max_bytes, now, max_age)
  local by_events = 0
  if s.count > max_events then
    by_events = drop_while(s, function() return s.count > max_events end, s.count - max_events)
  end
  local by_bytes = 0
  if s.bytes > max_bytes then
    by_bytes = drop_while(s, function() return s.bytes > max_bytes end, 2)
  end
  local by_age = trim_age(s, now, max_age)
  return by_events, by_bytes, by_age
end
