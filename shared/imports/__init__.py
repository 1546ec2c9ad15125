"""Background customer imports (issue 12): a large customer file is parsed and validated inside
the HTTP request (a bad file is refused whole, nothing stored), staged in Table Storage, and
written to the customers table by a queue-triggered worker that checkpoints after every chunk,
stops within its time budget and continues in a new message (see README "HTTP API").

  start.py     the request's part: stage, record, enqueue (``start_import``)
  worker.py    the queue trigger's body: write chunks, checkpoint, continue, finish, give up
  messages.py  the import queue's message format
"""
