-- Drop a session and its metadata (superseded incarnations included), and tell
-- its readers. KEYS: meta, stream, holes, superseded. ARGV: 1 channel. Reply: 1 or 0.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('PUBLISH', ARGV[1], '')
return 1
