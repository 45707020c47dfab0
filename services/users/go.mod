module github.com/vpnfleet/vpnfleet/services/users

go 1.26.8

replace github.com/vpnfleet/vpnfleet/shared => ../../shared
