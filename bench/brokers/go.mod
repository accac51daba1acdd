module weir/bench/brokers

go 1.24.0

require (
	github.com/eclipse/paho.mqtt.golang v1.5.1
	github.com/rabbitmq/amqp091-go v1.10.0
)

require (
	github.com/gorilla/websocket v1.5.3 // indirect
	golang.org/x/net v0.44.0 // indirect
	golang.org/x/sync v0.17.0 // indirect
)
