"""An MQTT client for the MQTT sidecar's tests (paho-mqtt), one persistent session at a time.

    mqtt_client.py subscribe PORT USER PASSWORD CLIENT_ID VERSION TOPIC QOS
        connects with a persistent session (clean session / clean start 0; in MQTT 5 a session
        expiry of an hour), subscribes, prints `granted=CODE` and disconnects
    mqtt_client.py drain PORT USER PASSWORD CLIENT_ID VERSION COUNT SECONDS
        reconnects to that session and prints `message TOPIC PAYLOAD` for each message it gets,
        until COUNT arrived or SECONDS passed, then `received=N` and disconnects

VERSION is 3.1.1 or 5. The host is 127.0.0.1.
"""
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def client(client_id, version, user, password):
    protocol = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
    kwargs = {} if protocol == mqtt.MQTTv5 else {"clean_session": False}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **kwargs)
    c.username_pw_set(user, password)
    return c


def connect(c, port, version):
    connected = threading.Event()
    c.on_connect = lambda *args: connected.set()
    if version == "5":
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        c.connect("127.0.0.1", port, clean_start=False, properties=props)
    else:
        c.connect("127.0.0.1", port)
    c.loop_start()
    if not connected.wait(10):
        sys.exit("no CONNACK")


def main():
    command, port, user, password, client_id, version = sys.argv[1:7]
    port = int(port)
    c = client(client_id, version, user, password)
    if command == "subscribe":
        topic, qos = sys.argv[7], int(sys.argv[8])
        granted = threading.Event()
        codes = []

        def on_subscribe(_c, _userdata, _mid, reason_codes, _props):
            codes.extend(reason_codes)
            granted.set()

        c.on_subscribe = on_subscribe
        connect(c, port, version)
        c.subscribe(topic, qos)
        if not granted.wait(10):
            sys.exit("no SUBACK")
        print(f"granted={int(codes[0].value) if hasattr(codes[0], 'value') else int(codes[0])}", flush=True)
    elif command == "drain":
        count, seconds = int(sys.argv[7]), float(sys.argv[8])
        received = []
        done = threading.Event()

        def on_message(_c, _userdata, message):
            received.append(message)
            print(f"message {message.topic} {message.payload.decode()}", flush=True)
            if len(received) >= count:
                done.set()

        c.on_message = on_message
        connect(c, port, version)
        done.wait(seconds)
        time.sleep(0.3)  # anything beyond COUNT would show here
        print(f"received={len(received)}", flush=True)
    else:
        sys.exit(f"unknown command {command}")
    c.disconnect()
    c.loop_stop()


if __name__ == "__main__":
    main()
