-- Reads a window of sum/count/min/max hashes (per second or per minute) for the dashboard, in
-- one call: one reply per bucket cost redis-py ~25 us of Python each, so a 3,600-second window read
-- as pipelined HGETALLs took ~100 ms of the aggregator's CPU. Read-only.
-- ARGV: key prefix (`P:sec:` or `P:min:`), first bucket, step between buckets, bucket count.
-- Returns one string: `sum,count,min,max` per bucket (empty fields where the hash is missing),
-- buckets separated by ';'. Numbers are Redis' own decimal strings, passed on untouched.
local prefix, first, step = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i = 0, tonumber(ARGV[4]) - 1 do
  local v = redis.call('HMGET', prefix .. string.format('%d', first + i * step), 'sum', 'count', 'min', 'max')
  out[i + 1] = (v[1] or '') .. ',' .. (v[2] or '') .. ',' .. (v[3] or '') .. ',' .. (v[4] or '')
end
return table.concat(out, ';')
