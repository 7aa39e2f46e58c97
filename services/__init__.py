"""What tasks do (render, store, build and send messages, record deliveries, relay jobs): no Celery, no HTTP."""
