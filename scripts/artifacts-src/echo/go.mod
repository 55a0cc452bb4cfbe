module hzcloud.invalid/echo

go 1.26
