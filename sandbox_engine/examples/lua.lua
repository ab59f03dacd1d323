io.write("Enter your name: ")
io.flush()
local name = io.read("*l") or ""
print("Hello " .. name)
