module aar.test/amscontract

go 1.19
