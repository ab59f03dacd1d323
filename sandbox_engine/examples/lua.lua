io.write("Enter your name: ")
local name = io.read("*l") or ""
print("Hello " .. name)
