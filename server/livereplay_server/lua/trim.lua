-- Apply retention now (POST .../trim). KEYS: meta, stream, holes
-- ARGV: 1 max_events, 2 max_bytes, 3 now_ms, 4 max_age_ms, 5 channel
-- Reply: nil for an unknown session, else {by events, by bytes, by age}
local s = load(KEYS[1], KEYS[2], KEYS[3])
if not s then return false end
local by_events, by_bytes, by_age = enforce(s, tonumber(ARGV[1]), tonumber(ARGV[2]),
                                            tonumber(ARGV[3]), tonumber(ARGV[4]))
if by_events + by_bytes + by_age > 0 then redis.call('PUBLISH', ARGV[5], 't') end
return {by_events, by_bytes, by_age}
