"""ticketq: the background-job backbone of an event-ticketing platform."""
