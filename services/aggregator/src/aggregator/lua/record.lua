-- Records from Python, read by name: aggregator/records.py declares them, and the RECORDS and
-- TABLES above are generated from it when a script is loaded. A record is checked when it is
-- decoded, before the script writes anything: a field the two sides do not agree on fails the
-- call at once (Redis keeps the writes of a script that fails half way) instead of folding a nil.

local function strict(t, kind, rows)
  return setmetatable(t, {
    rows = rows,
    __index = function(_, name)
      error('record ' .. kind .. ' has no field ' .. tostring(name) .. ' (aggregator/records.py)')
    end,
  })
end

-- The number of rows of a table (every column has it).
local function rows(t)
  return getmetatable(t).rows
end

-- A table of TABLES[kind]: every column present, all of one length.
local function columns(t, kind)
  if type(t) ~= 'table' then error('record ' .. kind .. ' is not a table of columns') end
  local n
  for _, name in ipairs(TABLES[kind]) do
    local column = t[name]
    if type(column) ~= 'table' then error('record ' .. kind .. ' has no column ' .. name) end
    if n == nil then
      n = #column
    elseif #column ~= n then
      error('record ' .. kind .. ': column ' .. name .. ' has ' .. #column .. ' rows, not ' .. n)
    end
  end
  return strict(t, kind, n or 0)
end

-- One JSON object of RECORDS[kind], decoded: every field present; a field that names a table of
-- TABLES is checked as one.
local function record(json, kind)
  local t = cjson.decode(json)
  for _, name in ipairs(RECORDS[kind]) do
    if t[name] == nil then error('record ' .. kind .. ' has no field ' .. name) end
    if TABLES[name] then columns(t[name], name) end
  end
  return strict(t, kind)
end
