-- Argo CD health for GuardrailPolicy: Healthy when Ready is True for the current
-- generation, Degraded when the operator says so, Progressing otherwise.
local hs = {status = "Progressing", message = "Waiting for the operator"}
if obj.status ~= nil and obj.status.conditions ~= nil then
  local current = obj.status.observedGeneration == nil or obj.metadata.generation == nil
    or obj.status.observedGeneration >= obj.metadata.generation
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Degraded" and c.status == "True" then
      hs.status = "Degraded"
      hs.message = c.message
      return hs
    end
    if c.type == "Ready" then
      if c.status == "True" and current then
        hs.status = "Healthy"
      end
      hs.message = c.message
    end
  end
end
return hs
