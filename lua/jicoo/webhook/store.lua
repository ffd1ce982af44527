-- The claim stores, by the name they had before they moved into the journal (journal/claims/).
return require "jicoo.webhook.journal.claims"
