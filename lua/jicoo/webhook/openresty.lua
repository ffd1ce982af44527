-- The nginx adapter, by its documented name (the code is jicoo.webhook.nginx.adapter).
return require "jicoo.webhook.nginx.adapter"
