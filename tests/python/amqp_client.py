"""An AMQP 0.9.1 client for the AMQP sidecar's tests (pika): one connection, steps in order.

    amqp_client.py PORT USER PASSWORD STEP...

Each step prints one line: `STEP ok [DETAIL]`, or `STEP refused CODE TEXT` when the broker
(or the sidecar in its stead) closed the channel; the next step then gets a new channel on
the same connection. Steps:

    exchange:NAME:TYPE          declare a durable exchange
    queue:NAME                  declare a durable queue ("" for a server-named one: DETAIL
                                is its name)
    bind:QUEUE:EXCHANGE:KEY     bind a queue
    publish:EXCHANGE:KEY:COUNT  publish COUNT persistent messages `KEY-i` with publisher
                                confirms (DETAIL: confirmed=COUNT)
    consume:QUEUE:COUNT         consume (acking each) until COUNT arrived or 10 s passed
                                (DETAIL: received=N then the bodies, comma-separated)
    get:QUEUE                   basic.get one message (DETAIL: the body, or `empty`)
    purge:QUEUE                 purge a queue
    delete:QUEUE                delete a queue
    sleep:SECONDS               wait (the connection and channel stay open)

A refused login prints `login refused CODE TEXT` and exits 0. The host is 127.0.0.1; the
credentials go as PLAIN, or as AMQPLAIN when USER starts with `amqplain:`. With AMQP_TLS_CA
set, the connection is TLS (server name localhost) trusting that CA, presenting the client
certificate AMQP_TLS_CERT with its key AMQP_TLS_KEY when those are set.
"""
import os
import re
import ssl
import sys

import pika
import pika.credentials
import pika.exceptions


class AmqPlain(pika.credentials.PlainCredentials):
    """AMQPLAIN: LOGIN and PASSWORD in a field table (pika itself speaks only PLAIN)."""

    TYPE = "AMQPLAIN"

    def response_for(self, start):
        if self.TYPE.encode() not in start.mechanisms.split():
            return None, None
        from pika import data

        table = []
        data.encode_table(table, {"LOGIN": self.username, "PASSWORD": self.password})
        # The response is the table's fields without the table's own length.
        return self.TYPE, b"".join(table)[4:]


def main():
    port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    if user.startswith("amqplain:"):
        credentials = AmqPlain(user[len("amqplain:"):], password)
    else:
        credentials = pika.PlainCredentials(user, password)
    tls = None
    if os.environ.get("AMQP_TLS_CA"):
        context = ssl.create_default_context(cafile=os.environ["AMQP_TLS_CA"])
        if os.environ.get("AMQP_TLS_CERT"):
            context.load_cert_chain(os.environ["AMQP_TLS_CERT"], os.environ["AMQP_TLS_KEY"])
        tls = pika.SSLOptions(context, "localhost")
    params = pika.ConnectionParameters(
        "127.0.0.1",
        port,
        "/",
        credentials,
        connection_attempts=1,
        # Heartbeats every 2 s: a sidecar that held them back would lose the connection within
        # a few seconds of quiet (the `sleep` step).
        heartbeat=2,
        socket_timeout=10,
        blocked_connection_timeout=30,
        ssl_options=tls,
    )
    try:
        connection = pika.BlockingConnection(params)
    except (
        pika.exceptions.ProbableAccessDeniedError,
        pika.exceptions.ProbableAuthenticationError,
        pika.exceptions.ConnectionClosedByBroker,
    ) as e:
        # pika words the broker's connection.close into its guess at the cause:
        # `ConnectionClosedByBroker: (403) 'TEXT'`.
        if hasattr(e, "reply_code"):
            reason = f"{e.reply_code} {e.reply_text}"
        else:
            words = re.search(r"\((\d+)\) ['\"](.*)['\"]$", str(e))
            reason = f"{words[1]} {words[2]}" if words else str(e)
        print(f"login refused {reason}", flush=True)
        return
    channel = None
    for step in sys.argv[4:]:
        if channel is None or not channel.is_open:
            channel = connection.channel()
            channel.confirm_delivery()
        try:
            print(f"{step} ok {run(channel, connection, step)}".rstrip(), flush=True)
        except pika.exceptions.ChannelClosedByBroker as e:
            print(f"{step} refused {e.reply_code} {e.reply_text}", flush=True)
            channel = None
    connection.close()


def run(channel, connection, step):
    kind, *args = step.split(":")
    if kind == "exchange":
        channel.exchange_declare(args[0], args[1], durable=True)
    elif kind == "queue":
        return channel.queue_declare(args[0], durable=args[0] != "", exclusive=args[0] == "").method.queue
    elif kind == "bind":
        channel.queue_bind(args[0], args[1], routing_key=args[2])
    elif kind == "publish":
        exchange, key, count = args[0], args[1], int(args[2])
        props = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
        for i in range(count):
            channel.basic_publish(exchange, key, f"{key}-{i}".encode(), props)
        return f"confirmed={count}"
    elif kind == "consume":
        queue, count = args[0], int(args[1])
        bodies = []
        for method, _props, body in channel.consume(queue, inactivity_timeout=10):
            if method is None:
                break
            bodies.append(body.decode())
            channel.basic_ack(method.delivery_tag)
            if len(bodies) >= count:
                break
        channel.cancel()
        return f"received={len(bodies)} {','.join(bodies)}"
    elif kind == "get":
        method, _props, body = channel.basic_get(args[0], auto_ack=True)
        return "empty" if method is None else body.decode()
    elif kind == "purge":
        channel.queue_purge(args[0])
    elif kind == "delete":
        channel.queue_delete(args[0])
    elif kind == "sleep":
        connection.sleep(float(args[0]))
    else:
        sys.exit(f"unknown step {step}")
    return ""


if __name__ == "__main__":
    main()
