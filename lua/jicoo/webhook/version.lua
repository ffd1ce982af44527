-- The version of jicoo-webhook, the one place it is written: the module's _VERSION, the
-- command's --version and the User-Agent of its HTTP requests all read it.
return "0.1.0"
