-- The nginx receiver, by its documented name (the code is jicoo.webhook.nginx.receiver).
return require "jicoo.webhook.nginx.receiver"
